from windowner.cli import main

main()
