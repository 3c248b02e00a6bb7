from impctl.cli.main import main

main()
