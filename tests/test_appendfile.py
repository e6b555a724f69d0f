"""Append-only result files: a torn last line is cut, earlier lines kept, the header written once."""

from latlab.appendfile import append_line, repair_tail


def test_torn_tail_is_cut_and_appends_continue_on_a_new_line(tmp_path):
    p = tmp_path / "r.csv"
    append_line(p, "1,a", "n,x")
    append_line(p, "2,b\n", "n,x")
    assert p.read_text() == "n,x\n1,a\n2,b\n" and not repair_tail(p)
    with p.open("a") as fh:
        fh.write("3,c-torn")
    assert repair_tail(p) and p.read_text() == "n,x\n1,a\n2,b\n"
    append_line(p, "4,d", "n,x")
    assert p.read_text().splitlines() == ["n,x", "1,a", "2,b", "4,d"]
    assert not repair_tail(tmp_path / "missing.csv")
