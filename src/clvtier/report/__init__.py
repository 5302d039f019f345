"""Plots and (later) the HTML report."""
