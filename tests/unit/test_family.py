"""Which match is the instance, which are its family (monit's top-most rule), and leftovers."""

from __future__ import annotations

from zelador.programs.family import Node, children_index, descendants, leftovers, top_most
from zelador.programs.states import Instance


def node(pid: int, ppid: int, created: float = 0.0) -> Node:
    return Node(Instance(pid, created or float(pid)), ppid)


def test_nginx_master_is_the_instance_and_workers_are_family():
    master, w1, w2 = node(100, 1), node(101, 100), node(102, 100)
    roots = top_most([w2, master, w1], {100: 1, 101: 100, 102: 100})
    assert roots == [master]
    assert descendants(100, children_index([master, w1, w2])) == {w1.instance, w2.instance}


def test_sshd_children_two_levels_down_through_a_non_matching_parent_are_family():
    sshd, conn, priv = node(10, 1), node(20, 10), node(40, 30)
    parents = {10: 1, 20: 10, 30: 20, 40: 30}
    assert top_most([sshd, conn, priv], parents) == [sshd]  # 30 (bash) does not match


def test_an_unrelated_second_match_is_a_duplicate_and_the_oldest_wins():
    first, second = node(100, 1, 5.0), node(200, 1, 9.0)
    assert top_most([second, first], {100: 1, 200: 1}) == [first, second]


def test_a_parent_cycle_cannot_hang_the_walk():
    a = node(5, 6)
    assert top_most([a], {5: 6, 6: 5}) == [a]


def test_leftovers_are_the_living_family_minus_the_spared():
    fam = {Instance(1, 1.0), Instance(2, 2.0), Instance(3, 3.0)}
    alive = {Instance(1, 1.0), Instance(3, 3.0), Instance(9, 9.0)}
    assert leftovers(fam, alive, spare={Instance(3, 3.0)}) == (Instance(1, 1.0),)


def test_a_scope_is_looked_for_in_the_slice_it_was_created_in(monkeypatch):
    from zelador.programs import proctree

    asked: list[str] = []
    monkeypatch.setattr(proctree, "_procs_any", lambda path: asked.append(path) or set())
    proctree.cgroup_pids("zelador-monitor-start-1.scope", "user-1000.slice")
    proctree.cgroup_pids("zelador-web-start-2.scope")
    assert asked == ["/user.slice/user-1000.slice/zelador-monitor-start-1.scope/cgroup.procs",
                     "/system.slice/zelador-web-start-2.scope/cgroup.procs"]


def test_a_scope_is_read_where_the_unified_hierarchy_is_mounted(monkeypatch, tmp_path):
    """/sys/fs/cgroup on a unified system, /sys/fs/cgroup/unified on a hybrid one (a container
    on a hybrid host): the first root that has the scope is read."""
    from zelador.programs import proctree

    unified = tmp_path / "unified" / "system.slice" / "zelador-a-start-1.scope"
    unified.mkdir(parents=True)
    (unified / "cgroup.procs").write_text("7\n9\n")
    monkeypatch.setattr(proctree, "CGROUP_ROOTS", (str(tmp_path / "v1"), str(tmp_path / "unified")))
    assert proctree.cgroup_pids("zelador-a-start-1.scope") == {7, 9}
