from gru_edge.cli import main

main()
