from clvtier.cli import main

main()
