from zelador.cli import main

raise SystemExit(main())
