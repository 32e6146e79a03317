#!/bin/sh
# The db service's first start (docker-entrypoint-initdb.d): the db-replica service may stream
# WAL from here as POSTGRES_USER, with its password (docs/scaling.md#read-replicas). A volume
# initialised before this file existed needs the same line added by hand, then
# SELECT pg_reload_conf().
set -eu
echo "host replication ${POSTGRES_USER} all scram-sha-256" >> "${PGDATA}/pg_hba.conf"
