"""The demo generator: deterministic by seed, with planted segments that differ in more than one signal."""

from __future__ import annotations

import hashlib

import duckdb

from tasks.ingest.demo import NOISE, PLANTED_SEGMENTS, DemoConfig, write_demo_data


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
    assert [s for s, *_ in per_segment] == [NOISE, *range(len(PLANTED_SEGMENTS))]
    buy_rates = [r for _, r, _ in per_segment]
    assert max(buy_rates) > 3 * min(buy_rates)  # funnels differ
    n_noise = con.execute(
        f"select count(*) from read_csv('{tmp_path / 'demo' / 'users.csv'}') where segment = -1"
    ).fetchall()
    assert 100 <= n_noise[0][0] <= 200  # about 5% of 3,000


def test_three_pairs_of_segments_share_their_taste_and_differ_in_how_they_shop():
    tastes = [tuple(sorted(s.taste.items())) for s in PLANTED_SEGMENTS]
    pairs = [(a, b) for a in range(len(tastes)) for b in range(a + 1, len(tastes)) if tastes[a] == tastes[b]]
    assert len(pairs) == 3
    for a, b in pairs:
        first, second = PLANTED_SEGMENTS[a], PLANTED_SEGMENTS[b]
        assert (
            abs(first.purchase_rate - second.purchase_rate) >= 0.3
            or abs(first.peak_hour - second.peak_hour) >= 6
        )


def test_a_titles_only_demo_has_no_category_column_and_its_spec_maps_none(tmp_path):
    from tasks.ingest.demo import demo_config
    from tasks.ingest.sources import parse_source_spec

    config = demo_config("demo:50:titles")
    assert (config.n_users, config.titles_only) == (50, True)
    write_demo_data(tmp_path / "t", config)
    header = (tmp_path / "t" / "items.csv").read_text().splitlines()[0]
    assert header == "item_id,title,price"
    spec = parse_source_spec(tmp_path / "t" / "source.toml")
    assert set(spec.items[0].columns) == {"item_id", "title", "price"}
