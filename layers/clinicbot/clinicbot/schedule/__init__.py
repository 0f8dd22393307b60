"""The schedule cache: ``mis_sync`` copies reference data and free slots from the MIS into the ScheduleTable
(``sync``, ``job``, ``cache_dynamo``), and the bot reads them from there while the copy is fresh
(``reader.CachedSchedule``). Importing this package imports nothing: pick the module you need (the
DynamoDB modules pull in pynamodb; none of them imports aiogram)."""
