from opencues.cli import main

main()
