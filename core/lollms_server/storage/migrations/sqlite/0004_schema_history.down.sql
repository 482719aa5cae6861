DROP TABLE schema_history;
