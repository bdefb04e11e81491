from windowner.entry import main

main()
