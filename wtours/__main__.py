from wtours.cli import main

main()
