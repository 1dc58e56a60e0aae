# A throwaway PostgreSQL 15 for the tests: `source .ci/pg.sh && pg_up` starts a cluster in a
# temporary folder, listening on a unix socket only (no port to clash), and exports
# FLOE_TEST_PG (a connection string) and FLOE_TEST_PG_BIN; `pg_down` stops it and removes
# the folder. Installs Debian's postgresql-15 when no initdb is found.
#
# fsync is off (the tests run on throwaway data; a kill -9 of postgres still loses nothing
# acknowledged, since the WAL is written before each commit returns); synchronous_commit
# stays on, so every acknowledged commit was written.

pg_up() {
    local bindir
    bindir="$(pg_config --bindir 2>/dev/null || true)"
    if [[ ! -x "${bindir}/initdb" ]]; then
        bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
    fi
    if [[ ! -x "${bindir}/initdb" ]]; then
        echo "installing postgresql-15 (Debian)"
        local sudo=()
        [[ "$(id -u)" == 0 ]] || sudo=(sudo)
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
        bindir=/usr/lib/postgresql/15/bin
    fi
    FLOE_PG_DIR="$(mktemp -d /tmp/floe-pg.XXXXXX)"
    # initdb refuses to run as root: the cluster belongs to the postgres user then.
    local as=()
    if [[ "$(id -u)" == 0 ]]; then
        chown postgres: "${FLOE_PG_DIR}"
        as=(runuser -u postgres --)
    fi
    chmod 700 "${FLOE_PG_DIR}"
    "${as[@]}" "${bindir}/initdb" -D "${FLOE_PG_DIR}/data" -U floe --auth=trust -E UTF8 \
        --locale=C.UTF-8 --no-sync >/dev/null
    "${as[@]}" "${bindir}/pg_ctl" -D "${FLOE_PG_DIR}/data" -l "${FLOE_PG_DIR}/log" -w -t 60 start \
        -o "-c listen_addresses='' -k ${FLOE_PG_DIR} -c fsync=off -c full_page_writes=off -c max_connections=300" \
        >/dev/null
    FLOE_PG_AS="${as[*]}"
    export FLOE_PG_DIR FLOE_PG_AS
    export FLOE_TEST_PG_BIN="${bindir}"
    export FLOE_TEST_PG="host=${FLOE_PG_DIR} user=floe dbname=postgres"
    echo "PostgreSQL: ${FLOE_TEST_PG} ($("${bindir}/postgres" --version))"
}

pg_down() {
    if [[ -n "${FLOE_PG_DIR:-}" && -d "${FLOE_PG_DIR}" ]]; then
        ${FLOE_PG_AS:-} "${FLOE_TEST_PG_BIN:-/usr/lib/postgresql/15/bin}/pg_ctl" -D "${FLOE_PG_DIR}/data" -m immediate stop \
            >/dev/null 2>&1 || true
        rm -rf "${FLOE_PG_DIR}"
    fi
}
