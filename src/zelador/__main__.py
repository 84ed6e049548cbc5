from zelador.early import main

raise SystemExit(main())
