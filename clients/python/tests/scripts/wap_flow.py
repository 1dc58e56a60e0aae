"""
Write-Audit-Publish with Bauplan: ingest a file into a table on a fresh branch, run a
pipeline over it, audit what it wrote, and publish it to main by a merge.

Written the way Bauplan's example orchestration scripts are (a branch per ingestion named
after the user, `create_table` + `import_data`, `run` with parameters, checks on
`job_status`, queries to Arrow, a tag on the audited commit, `merge_branch`). The one
change for floe is how the client is made: `import floe.bauplan as bauplan` instead of
`import bauplan`; `bauplan.Client()` then finds the server in FLOE_URL.

    FLOE_URL=http://127.0.0.1:8181 python wap_flow.py --file-path trips.csv \\
        --project-dir ./fares
"""

import argparse
from datetime import datetime

import floe.bauplan as bauplan  # for Bauplan itself: import bauplan


def _step(msg: str) -> None:
    print(f"  - {msg}")


def ensure_namespace(client: bauplan.Client, namespace: str, branch: str) -> None:
    if not client.has_namespace(namespace, ref=branch):
        client.create_namespace(namespace, branch=branch)
        _step(f"created namespace '{namespace}'")


def source_to_iceberg_table(client: bauplan.Client, table_name: str, namespace: str,
                            source: str, branch: str) -> None:
    """Write: the table on the ingestion branch, created from the file's schema."""
    client.delete_branch(branch, if_exists=True)
    client.create_branch(branch, from_ref="main")
    assert client.has_branch(branch), "Branch not found"
    ensure_namespace(client, namespace, branch)
    client.create_table(table=table_name, search_uri=source, namespace=namespace,
                        branch=branch, replace=True)
    assert client.has_table(table=f"{namespace}.{table_name}", ref=branch), "Table not found"
    state = client.import_data(table=table_name, search_uri=source, namespace=namespace,
                               branch=branch)
    assert not state.error, f"Import failed: {state.error}"
    _step(f"imported {source} into {namespace}.{table_name} (job {state.job_id})")


def run_quality_checks(client: bauplan.Client, branch: str) -> dict:
    """Audit: no missing fares in the source, and the pipeline's totals add up."""
    fares = client.scan(table="raw.trips", ref=branch, columns=["fare"])
    assert fares["fare"].null_count == 0, "Quality check failed: null fares"
    totals = client.query("SELECT n, total FROM analytics.fare_totals", ref=branch).to_pylist()
    kept = client.query("SELECT count(*) AS n FROM analytics.fares", ref=branch).to_pylist()
    assert totals and totals[0]["n"] == kept[0]["n"] > 0, f"Totals do not add up: {totals}"
    return totals[0]


def main(file_path: str, project_dir: str) -> None:
    client = bauplan.Client()
    user = client.info().user
    if user is None:
        raise RuntimeError("Bauplan user information is unavailable")
    username = user.username
    branch = f"{username}.wap_{datetime.now().strftime('%Y%m%d_%H%M%S')}"
    print(f"Using branch {branch}")

    # -- write ---------------------------------------------------------------------------
    source_to_iceberg_table(client, "trips", "raw", file_path, branch)
    try:
        client.create_branch(branch, from_ref="main")
    except bauplan.exceptions.BranchExistsError:
        _step("the branch is there already, as it should be")
    ensure_namespace(client, "analytics", branch)
    run_state = client.run(project_dir=project_dir, ref=branch, namespace="analytics",
                           cache="off", parameters={"min_fare": 3.0})
    if run_state.job_status != "SUCCESS":
        raise RuntimeError(f"{run_state.job_id} failed: {run_state.job_status} — {run_state.error}")
    _step(f"pipeline succeeded (job {run_state.job_id})")
    # The commit tracks which job produced it.
    last_commit = next(iter(client.get_commits(branch, limit=1)))
    assert last_commit.properties["bpln_job_id"] == run_state.job_id

    # -- audit ---------------------------------------------------------------------------
    totals = run_quality_checks(client, branch)
    _step(f"audit passed: {totals['n']} fares, total {totals['total']}")

    # A faulty run is transactional: the branch is not polluted.
    bad_run = client.run(project_dir=project_dir, ref=branch, namespace="analytics",
                         parameters={"min_fare": 3.0, "fail": True})
    assert bad_run.job_status != "SUCCESS" and bad_run.job_id is not None
    assert run_quality_checks(client, branch) == totals
    _step(f"faulty run failed as expected (job {bad_run.job_id}), branch untouched")

    # Tag the audited commit; a query by tag reads exactly it.
    tag = f"{username}.audited"
    if client.has_tag(tag):
        client.delete_tag(tag)
    client.create_tag(tag, last_commit.ref)
    by_tag = client.query("SELECT total FROM analytics.fare_totals", ref=client.get_tag(tag))
    assert by_tag.to_pylist() == [{"total": totals["total"]}]

    # -- publish -------------------------------------------------------------------------
    client.merge_branch(source_ref=branch, into_branch="main")
    client.delete_branch(branch)
    assert not client.has_branch(branch)
    print(f"published {totals['n']} fares, total {totals['total']}")
    print("ok")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Write-Audit-Publish with Bauplan")
    parser.add_argument("--file-path", required=True, help="a CSV or Parquet file to ingest")
    parser.add_argument("--project-dir", required=True, help="the pipeline project")
    args = parser.parse_args()
    main(args.file_path, args.project_dir)
