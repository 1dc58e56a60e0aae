"""Refs, history, merges and namespaces against a real `floe serve`: every call of
`floe.Client` that changes or reads the catalog, and the errors floe answers."""

from __future__ import annotations

import unittest

from support import ServerTest

import floe


class Branches(ServerTest):
    def test_a_branch_is_created_read_listed_and_deleted(self) -> None:
        main = self.client.get_branch("main")
        dev = self.client.create_branch("feature/dev", from_ref="main")
        self.assertEqual((dev.name, dev.kind, dev.head), ("feature/dev", "branch", main.head))
        self.assertEqual(dev.created_by, "anonymous")
        self.assertTrue(self.client.has_branch("feature/dev"))
        self.assertIn("feature/dev", [b.name for b in self.client.list_branches()])
        self.assertEqual(self.client.get_ref("feature/dev"), dev)
        self.client.delete_branch("feature/dev")
        self.assertFalse(self.client.has_branch("feature/dev"))
        with self.assertRaises(floe.NotFoundError) as caught:
            self.client.get_branch("feature/dev")
        self.assertEqual(caught.exception.error_type, "RefNotFound")
        self.assertEqual(caught.exception.message, "ref feature/dev does not exist")
        self.assertTrue(caught.exception.error_id)

    def test_a_second_branch_of_the_same_name_is_a_conflict(self) -> None:
        self.client.create_branch("twice")
        with self.assertRaises(floe.ConflictError) as caught:
            self.client.create_branch("twice")
        self.assertEqual(caught.exception.status, 409)
        self.assertEqual(caught.exception.error_type, "RefAlreadyExists")
        self.assertIn("already exists", caught.exception.message)

    def test_main_cannot_be_deleted_and_a_bad_source_is_not_found(self) -> None:
        with self.assertRaises(floe.BadRequestError) as caught:
            self.client.delete_branch("main")
        self.assertEqual(caught.exception.error_type, "DefaultBranch")
        with self.assertRaises(floe.NotFoundError):
            self.client.create_branch("orphan", from_ref="no-such-branch")
        self.assertFalse(self.client.has_branch("orphan"))

    def test_tags_point_at_a_commit_and_refuse_writes(self) -> None:
        self.client.create_branch("tagged")
        first = self.client.get_branch("tagged").head
        self.client.create_namespace("later", "tagged")
        tag = self.client.create_tag("v1", from_ref=f"tagged@{first}")
        self.assertEqual((tag.kind, tag.head), ("tag", first))
        self.assertTrue(self.client.has_tag("v1"))
        self.assertFalse(self.client.has_branch("v1"))
        self.assertIn("v1", [t.name for t in self.client.list_tags()])
        with self.assertRaises(floe.BadRequestError) as caught:
            self.client.create_namespace("nope", "v1")
        self.assertEqual(caught.exception.error_type, "NotABranch")
        with self.assertRaises(floe.BadRequestError):
            self.client.get_branch("v1")
        with self.assertRaises(floe.BadRequestError):
            self.client.delete_tag("tagged")  # a branch: left alone
        self.assertTrue(self.client.has_branch("tagged"))
        self.client.delete_tag("v1")
        self.assertFalse(self.client.has_tag("v1"))

    def test_a_branch_is_reset_and_the_reflog_remembers(self) -> None:
        self.client.create_branch("moving")
        before = self.client.get_branch("moving").head
        self.client.create_namespace("gone", "moving")
        moved = self.client.get_branch("moving").head
        self.assertNotEqual(moved, before)
        with self.assertRaises(floe.ConflictError):
            self.client.reset_branch("moving", before, expected_head=before)
        self.assertEqual(self.client.reset_branch("moving", f"moving~1").head, before)
        entries = self.client.reflog("moving")
        self.assertEqual([e.operation for e in entries], ["assign", "commit", "create"])
        self.assertEqual((entries[0].old, entries[0].new), (moved, before))


class History(ServerTest):
    def test_commits_are_logged_shown_and_diffed(self) -> None:
        self.client.create_branch("hist")
        start = self.client.get_branch("hist").head
        ns = self.client.create_namespace("sales", "hist", properties={"owner": "ana"},
                                          message="add sales")
        self.client.create_namespace(["sales", "eu"], "hist")
        log = self.client.log("hist", limit=2)
        self.assertEqual([c.message for c in log], ["create namespace sales.eu", "add sales"])
        self.assertEqual(log[1].hash, ns.head)
        self.assertEqual(log[0].parents, [ns.head])
        self.assertEqual(log[1].parents, [start])
        self.assertEqual([c.hash for c in self.client.log("hist", grep="ADD SALES")], [ns.head])
        self.assertEqual(len(self.client.log("hist", path="sales.eu")), 1)
        detail = self.client.get_commit(ns.head[:12])
        self.assertEqual(detail.commit.hash, ns.head)
        self.assertEqual([(c.key, c.kind, c.content_kind) for c in detail.changes],
                         [("sales", "added", "namespace")])
        changes = self.client.diff("main", "hist")
        self.assertEqual([(c.key, c.kind) for c in changes],
                         [("sales", "added"), ("sales.eu", "added")])
        keys = [e.key for e in self.client.entries("hist", prefix="sales")]
        self.assertEqual(keys, ["sales", "sales.eu"])

    def test_an_unknown_commit_and_a_bad_spec_are_told_apart(self) -> None:
        with self.assertRaises(floe.NotFoundError):
            self.client.get_commit("0" * 64)
        with self.assertRaises(floe.BadRequestError):
            self.client.log("not a spec!")


class Merges(ServerTest):
    def test_a_branch_merges_fast_forward_then_with_a_commit(self) -> None:
        self.client.create_branch("m-dev")
        self.client.create_namespace("from_dev", "m-dev")
        dry = self.client.merge("m-dev", into="main", dry_run=True)
        self.assertTrue(dry.dry_run)
        self.assertNotEqual(self.client.get_branch("main").head, dry.head)
        merged = self.client.merge("m-dev", into="main")
        self.assertEqual(merged.kind, "fast-forward")
        self.assertEqual(merged.head, self.client.get_branch("m-dev").head)
        self.assertEqual([c.key for c in merged.changes], ["from_dev"])
        self.assertTrue(self.client.has_namespace("from_dev", "main"))
        # Both sides move: a merge commit with the message given.
        self.client.create_namespace("dev_side", "m-dev")
        self.client.create_namespace("main_side", "main")
        result = self.client.merge("m-dev", into="main", message="merge dev side")
        self.assertEqual(result.kind, "merged")
        top = self.client.log("main", limit=1)[0]
        self.assertEqual((top.message, len(top.parents)), ("merge dev side", 2))
        self.assertTrue(self.client.has_namespace("dev_side", "main"))

    def test_a_conflict_names_its_keys_and_changes_nothing(self) -> None:
        self.client.create_branch("c-left")
        self.client.create_branch("c-right")
        self.client.create_namespace("both", "c-left", properties={"side": "left"})
        self.client.create_namespace("both", "c-right", properties={"side": "right"})
        self.client.merge("c-left", into="main")
        head = self.client.get_branch("main").head
        with self.assertRaises(floe.ConflictError) as caught:
            self.client.merge("c-right", into="main")
        e = caught.exception
        self.assertEqual(e.error_type, "Conflict")
        self.assertEqual([c["key"] for c in e.conflicts], ["both"])
        self.assertEqual(e.current_head, head)
        self.assertEqual(self.client.get_branch("main").head, head)
        # Resolving toward the source takes the right side.
        self.client.merge("c-right", into="main", on_conflict="source")
        self.assertEqual(self.client.get_namespace("both").properties, {"side": "right"})

    def test_a_commit_is_cherry_picked_and_reverted(self) -> None:
        self.client.create_branch("pick-src")
        self.client.create_branch("pick-dst")
        made = self.client.create_namespace("picked", "pick-src")
        result = self.client.cherry_pick(made.head, "pick-dst")
        self.assertTrue(result.created)
        self.assertTrue(self.client.has_namespace("picked", "pick-dst"))
        undone = self.client.revert(result.head, "pick-dst")
        self.assertEqual(undone.parent, result.head)
        self.assertFalse(self.client.has_namespace("picked", "pick-dst"))


class Namespaces(ServerTest):
    def test_a_namespace_is_created_updated_listed_and_dropped(self) -> None:
        self.client.create_branch("ns")
        created = self.client.create_namespace("crm", "ns", properties={"owner": "ana"})
        self.assertEqual((created.name, created.properties), ("crm", {"owner": "ana"}))
        self.client.create_namespace("crm.leads", "ns")
        self.assertEqual([n.name for n in self.client.list_namespaces("ns")], ["crm", "crm.leads"])
        self.assertEqual([n.name for n in self.client.list_namespaces(
            "ns", parent="crm", children_only=True)], ["crm.leads"])
        update = self.client.update_namespace_properties(
            "crm", "ns", updates={"tier": "gold"}, removals=["owner", "absent"])
        self.assertEqual((update.updated, update.removed, update.missing),
                         (["tier"], ["owner"], ["absent"]))
        self.assertEqual(self.client.get_namespace("crm", "ns").properties, {"tier": "gold"})
        self.assertFalse(self.client.has_namespace("crm", "main"))
        with self.assertRaises(floe.ConflictError) as caught:
            self.client.drop_namespace("crm", "ns")  # not empty
        self.assertEqual(caught.exception.error_type, "NamespaceNotEmpty")
        self.client.drop_namespace("crm.leads", "ns")
        dropped = self.client.drop_namespace("crm", "ns")
        self.assertTrue(dropped.created)
        self.assertFalse(self.client.has_namespace("crm", "ns"))

    def test_a_missing_namespace_or_ref_is_an_error_with_floes_message(self) -> None:
        with self.assertRaises(floe.NotFoundError) as caught:
            self.client.get_namespace("nowhere")
        self.assertEqual(caught.exception.message, "namespace nowhere does not exist; create it first")
        with self.assertRaises(floe.NotFoundError):
            self.client.has_namespace("nowhere", "no-such-ref")
        self.client.create_branch("dupns")
        self.client.create_namespace("dup", "dupns")
        with self.assertRaises(floe.ConflictError) as caught:
            self.client.create_namespace("dup", "dupns")
        self.assertEqual(caught.exception.error_type, "NamespaceAlreadyExists")


if __name__ == "__main__":
    unittest.main()
