-- One database per service (docs/architecture.md): services never share tables, and each runs its own
-- migrations (service tables, outbox, inbox) in its own database. Run once by the postgres image's
-- entrypoint on an empty data volume; the services' DATABASE_URLs point at these names.
-- "order" is a reserved word, hence the quotes.
CREATE DATABASE "order";
CREATE DATABASE inventory;
CREATE DATABASE customer;
CREATE DATABASE payment;
CREATE DATABASE shipping;
CREATE DATABASE notification;
CREATE DATABASE orderview;
