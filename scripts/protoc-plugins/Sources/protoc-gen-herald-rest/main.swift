HeraldRESTGenerator.main()
