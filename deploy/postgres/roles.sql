-- Herald's per-service database roles (SPEC §1 and §8), for one database. Run it as a superuser
-- before the services first start (on a managed PostgreSQL without one, the administrator role
-- must first be granted membership in each herald_* role); running it again changes nothing. docker-compose.yml runs it when the PostgreSQL volume is created; on
-- Kubernetes, CloudNativePG runs it at bootstrap (deploy/k8s/base/postgres-cluster.yaml).
--
--   herald_<service>     LOGIN; owns schema <service> and nothing else, so it can migrate and use
--                        its own schema and cannot even look into another service's.
--   herald_readonly      NOLOGIN; USAGE and SELECT on every service schema, now and for tables
--                        the owners create later (default privileges).
--   herald_verification  owns schema verification, is a member of herald_readonly, and may create
--                        schemas (drift checks build the expected schema in a scratch one).
--
-- Passwords are not set here: docker-compose's init script (deploy/postgres/passwords.sh) and
-- CloudNativePG's managed roles set them.

DO $$
DECLARE
  name text;
BEGIN
  FOREACH name IN ARRAY ARRAY['herald_campaign', 'herald_delivery', 'herald_ratelimit', 'herald_sync',
                              'herald_verification', 'herald_gateway'] LOOP
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name) THEN
      EXECUTE format('CREATE ROLE %I LOGIN', name);
    END IF;
  END LOOP;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'herald_readonly') THEN
    CREATE ROLE herald_readonly NOLOGIN;
  END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS campaign AUTHORIZATION herald_campaign;
CREATE SCHEMA IF NOT EXISTS delivery AUTHORIZATION herald_delivery;
CREATE SCHEMA IF NOT EXISTS ratelimit AUTHORIZATION herald_ratelimit;
CREATE SCHEMA IF NOT EXISTS sync AUTHORIZATION herald_sync;
CREATE SCHEMA IF NOT EXISTS verification AUTHORIZATION herald_verification;
CREATE SCHEMA IF NOT EXISTS gateway AUTHORIZATION herald_gateway;

-- A database that ran Herald under one role before: hand each schema, and what is in it, to its
-- service's role (tables and views with their indexes and column sequences, other sequences, and
-- types that are not a table's own row or array type).
DO $$
DECLARE
  owned record;
  object record;
BEGIN
  FOR owned IN SELECT n.nspname AS schema, 'herald_' || n.nspname AS role
               FROM pg_namespace n
               WHERE n.nspname IN ('campaign', 'delivery', 'ratelimit', 'sync', 'verification', 'gateway')
                 AND pg_get_userbyid(n.nspowner) <> 'herald_' || n.nspname LOOP
    EXECUTE format('ALTER SCHEMA %I OWNER TO %I', owned.schema, owned.role);
    FOR object IN SELECT c.relname, c.relkind FROM pg_class c
                  WHERE c.relnamespace = owned.schema::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
                    AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                      AND d.objid = c.oid AND d.deptype IN ('a', 'i')) LOOP
      EXECUTE format('ALTER %s %I.%I OWNER TO %I',
                     CASE object.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                         WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
                     owned.schema, object.relname, owned.role);
    END LOOP;
    FOR object IN SELECT t.typname FROM pg_type t
                  WHERE t.typnamespace = owned.schema::regnamespace AND t.typrelid = 0 AND t.typelem = 0 LOOP
      EXECUTE format('ALTER TYPE %I.%I OWNER TO %I', owned.schema, object.typname, owned.role);
    END LOOP;
  END LOOP;
END
$$;

-- Nobody else creates anything: not in public, not new schemas (verification's scratch schemas
-- excepted).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
DO $$
BEGIN
  EXECUTE format('REVOKE CREATE ON DATABASE %I FROM PUBLIC', current_database());
  EXECUTE format('GRANT CREATE ON DATABASE %I TO herald_verification', current_database());
END
$$;

GRANT USAGE ON SCHEMA campaign, delivery, ratelimit, sync, verification, gateway TO herald_readonly;
GRANT SELECT ON ALL TABLES IN SCHEMA campaign, delivery, ratelimit, sync, verification, gateway TO herald_readonly;
ALTER DEFAULT PRIVILEGES FOR ROLE herald_campaign IN SCHEMA campaign GRANT SELECT ON TABLES TO herald_readonly;
ALTER DEFAULT PRIVILEGES FOR ROLE herald_delivery IN SCHEMA delivery GRANT SELECT ON TABLES TO herald_readonly;
ALTER DEFAULT PRIVILEGES FOR ROLE herald_ratelimit IN SCHEMA ratelimit GRANT SELECT ON TABLES TO herald_readonly;
ALTER DEFAULT PRIVILEGES FOR ROLE herald_sync IN SCHEMA sync GRANT SELECT ON TABLES TO herald_readonly;
ALTER DEFAULT PRIVILEGES FOR ROLE herald_gateway IN SCHEMA gateway GRANT SELECT ON TABLES TO herald_readonly;
GRANT herald_readonly TO herald_verification;
