from impctl.cli.entry import main

main()
