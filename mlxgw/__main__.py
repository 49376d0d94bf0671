from mlxgw.cli import main

main()
