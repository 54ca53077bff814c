-- One login per service, owning its own database only (run once as the
-- PostgreSQL administrator; passwords from your secret store, e.g.
-- psql -v intake_password=... -f databases.sql). No service may connect to
-- another's database, none is a superuser; each URL secret
-- (masar-<service>-database) names its own login.
\set ON_ERROR_STOP on
CREATE ROLE intake LOGIN PASSWORD :'intake_password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE ROLE shelter LOGIN PASSWORD :'shelter_password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE ROLE legal LOGIN PASSWORD :'legal_password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE ROLE employment LOGIN PASSWORD :'employment_password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE ROLE network LOGIN PASSWORD :'network_password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE ROLE health LOGIN PASSWORD :'health_password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE ROLE psychosocial LOGIN PASSWORD :'psychosocial_password' NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE DATABASE intake OWNER intake;
CREATE DATABASE shelter OWNER shelter;
CREATE DATABASE legal OWNER legal;
CREATE DATABASE employment OWNER employment;
CREATE DATABASE network OWNER network;
CREATE DATABASE health OWNER health;
CREATE DATABASE psychosocial OWNER psychosocial;
REVOKE ALL ON DATABASE intake, shelter, legal, employment, network, health, psychosocial FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE intake TO intake;
GRANT CONNECT, TEMPORARY ON DATABASE shelter TO shelter;
GRANT CONNECT, TEMPORARY ON DATABASE legal TO legal;
GRANT CONNECT, TEMPORARY ON DATABASE employment TO employment;
GRANT CONNECT, TEMPORARY ON DATABASE network TO network;
GRANT CONNECT, TEMPORARY ON DATABASE health TO health;
GRANT CONNECT, TEMPORARY ON DATABASE psychosocial TO psychosocial;
