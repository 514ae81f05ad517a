"""The demo generator: deterministic by seed, with planted segments that differ in more than one signal."""

from __future__ import annotations

import hashlib

import duckdb

from tasks.ingest.demo import PLANTED_SEGMENTS, DemoConfig, write_demo_data


def digest(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_the_same_seed_writes_the_same_files_and_another_seed_does_not(tmp_path):
    write_demo_data(tmp_path / "a", DemoConfig(n_users=300, seed=7))
    write_demo_data(tmp_path / "b", DemoConfig(n_users=300, seed=7))
    write_demo_data(tmp_path / "c", DemoConfig(n_users=300, seed=8))
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a")["events.csv"] != digest(tmp_path / "c")["events.csv"]


def test_chunked_writing_gives_the_same_users_as_one_chunk_would_per_chunk_seed(tmp_path):
    counts = write_demo_data(tmp_path / "d", DemoConfig(n_users=250, chunk_users=100))
    con = duckdb.connect()
    users = con.execute(
        f"select count(*), count(distinct user_id) from read_csv('{tmp_path / 'd' / 'users.csv'}')"
    ).fetchall()
    events = con.execute(
        f"select count(*), count(distinct user_id) from read_csv('{tmp_path / 'd' / 'events.csv'}')"
    ).fetchall()
    assert users == [(250, 250)]
    assert events == [(counts["events"], 250)]


def test_default_demo_has_about_3000_users_and_150k_events_with_all_segments(tmp_path):
    counts = write_demo_data(tmp_path / "demo")
    assert counts["users"] == 3000
    assert 120_000 <= counts["events"] <= 200_000
    con = duckdb.connect()
    per_segment = con.execute(
        f"""
        select u.segment,
               count(*) filter (where e.event_type = 'purchase') / count(*) filter (where e.event_type = 'view') as buy_rate,
               avg(hour(e.ts)) as mean_hour
        from read_csv('{tmp_path / "demo" / "events.csv"}') e join read_csv('{tmp_path / "demo" / "users.csv"}') u using (user_id)
        group by 1 order by 1
        """
    ).fetchall()
    assert [s for s, *_ in per_segment] == list(range(len(PLANTED_SEGMENTS)))
    buy_rates = [r for _, r, _ in per_segment]
    assert max(buy_rates) > 3 * min(buy_rates)  # funnels differ
