"""Property-based tests (hypothesis) of the order, mask and schedule builders: NAR rings and raster orders and
their masks, DDT's reuse policies and statistical DP, the schedule store, the CFG rule and the argument checks.
Each method adds the builders it brings."""

import itertools
import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genlab.acceleration import ReusePolicy, ScheduleStore, brute_force_statdp, schedule_cost, solve_statdp
from genlab.acceleration.sharing import statdp_steps_for_rate
from genlab.errors import GenlabError, check_int, check_number
from genlab.schedulers import GuidanceSchedule, apply_cfg, cfg_combine
from genlab.schedulers.orders import (grid_coordinates, level_ids, manhattan_distance, proximity_mask, raster_levels,
                                      raster_mask, ring_levels)

SETTINGS = settings(max_examples=60, deadline=None)
grids = st.one_of(st.tuples(st.integers(1, 7), st.integers(1, 7)),
                  st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)))


@SETTINGS
@given(grids, st.data())
def test_rings_partition_the_grid_by_manhattan_distance(grid, data):
    start = tuple(data.draw(st.integers(0, n - 1)) for n in grid)
    levels = ring_levels(grid, start)
    n = math.prod(grid)
    flat = torch.cat(levels)
    assert sorted(flat.tolist()) == list(range(n))  # every cell exactly once
    dist = manhattan_distance(grid, start)
    assert len(levels) == int(dist.max()) + 1
    for k, level in enumerate(levels):
        assert len(level) > 0 and bool((dist[level] == k).all())
        assert level.tolist() == sorted(level.tolist())  # ascending raster index inside a ring
    if start == (0,) * len(grid):
        assert len(levels) == sum(g - 1 for g in grid) + 1  # 2n - 1 passes for an n x n grid


@SETTINGS
@given(grids, st.integers(0, 3))
def test_proximity_mask_is_causal_across_rings_and_full_inside(grid, num_cond):
    mask = proximity_mask(grid, num_cond=num_cond)
    d = manhattan_distance(grid)
    n = math.prod(grid)
    assert mask.shape == (num_cond + n, num_cond + n)
    body = mask[num_cond:, num_cond:]
    assert torch.equal(body, d[None, :] <= d[:, None])
    assert bool(mask[num_cond:, :num_cond].all()) and not bool(mask[:num_cond, num_cond:].any())
    assert torch.equal(level_ids(ring_levels(grid)), d)


@SETTINGS
@given(grids, st.integers(0, 2))
def test_raster_order_is_one_token_per_pass_with_a_causal_mask(grid, num_cond):
    levels = raster_levels(grid)
    n = math.prod(grid)
    assert [lv.tolist() for lv in levels] == [[i] for i in range(n)]
    assert torch.equal(raster_mask(grid, num_cond), torch.ones(n + num_cond, n + num_cond, dtype=torch.bool).tril())
    coords = grid_coordinates(grid)
    assert coords.shape == (n, len(grid)) and bool((coords.max(0).values == torch.tensor(grid) - 1).all())


@SETTINGS
@given(st.integers(1, 60), st.integers(1, 12))
def test_uniform_reuse_refreshes_every_r_steps(n, r):
    steps = ReusePolicy.uniform(r).key_steps(n)
    assert len(steps) == math.ceil(n / r) == ReusePolicy.uniform(r).num_recomputes(n) == statdp_steps_for_rate(n, r)
    assert steps[0] == 0 and all(b - a == r for a, b in zip(steps, steps[1:]))
    for i in range(n):  # every evaluation reuses a feature at most r - 1 steps old
        assert i - max(s for s in steps if s <= i) <= r - 1


@SETTINGS
@given(st.integers(2, 8), st.data())
def test_statistical_dp_is_optimal_and_well_formed(n, data):
    k = data.draw(st.integers(1, n))
    values = data.draw(st.lists(st.floats(0, 1, allow_nan=False), min_size=n * n, max_size=n * n))
    errors = torch.tensor(values, dtype=torch.float64).reshape(n, n)
    steps = solve_statdp(errors, k)
    assert len(steps) == k and steps[0] == 0 and steps == sorted(set(steps)) and steps[-1] < n
    best, best_cost = brute_force_statdp(errors, k)
    assert math.isclose(schedule_cost(errors, steps), best_cost, rel_tol=1e-9, abs_tol=1e-12)
    assert ReusePolicy.statdp(k).key_steps(n, errors) == steps
    # K = N recomputes everything, at no cost
    assert solve_statdp(errors, n) == list(range(n)) and schedule_cost(errors, range(n)) == 0


@SETTINGS
@given(st.integers(2, 12), st.data())
def test_schedule_store_finds_what_it_solved_and_keys_by_settings(n, data):
    k = data.draw(st.integers(1, n))
    sim = torch.rand(n, n, generator=torch.Generator().manual_seed(data.draw(st.integers(0, 10**6))),
                     dtype=torch.float64)
    settings_a, settings_b = {"num_inference_steps": n, "shift": 1.0}, {"num_inference_steps": n, "shift": 2.0}
    store = ScheduleStore()
    steps = store.solve(settings_a, ReusePolicy.statdp(k), sim, template_samples=8)
    assert store.find(settings_a, k) == steps and store.find(settings_b, k) is None
    again = store.solve(settings_a, ReusePolicy.statdp(k), sim, template_samples=8)
    assert again == steps and len(store.entries) == 1  # re-solving replaces the entry
    assert ScheduleStore(store.entries).find(settings_a, k) == steps  # survives a config round trip


@SETTINGS
@given(st.floats(0, 20, allow_nan=False), st.integers(1, 4))
def test_cfg_rule(scale, rows):
    g = torch.Generator().manual_seed(rows)
    uncond, cond = torch.randn(rows, 3, generator=g), torch.randn(rows, 3, generator=g)
    out = cfg_combine(torch.cat([uncond, cond]), scale)
    if scale == 1.0:
        assert torch.equal(out, cond)  # exactly the conditional half, not uncond + 1 * (cond - uncond)
    else:
        assert torch.equal(out, apply_cfg(uncond, cond, scale))
    torch.testing.assert_close(cfg_combine(torch.cat([uncond, cond]), 0.0), uncond)


@SETTINGS
@given(st.floats(0, 10, allow_nan=False), st.floats(0, 1), st.floats(0, 1))
def test_guidance_schedules(scale, a, b):
    lo, hi = sorted((a, b))
    if lo == hi:
        return
    interval = GuidanceSchedule(scale, "interval", (lo, hi))
    linear = GuidanceSchedule(scale, "linear")
    for t in [0.0, lo, (lo + hi) / 2, hi, 1.0]:
        assert interval(t) == (scale if lo < t < hi else 1.0)
    assert linear(0.0) == 1.0 and math.isclose(linear(1.0), scale, abs_tol=1e-12)


@SETTINGS
@given(st.one_of(st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True), st.none(), st.text(max_size=3),
                 st.booleans()))
def test_integer_and_number_checks_accept_exactly_their_kind(value):
    try:
        got = check_int(value, "x", minimum=1)
        assert isinstance(value, int) and not isinstance(value, bool) and value >= 1 and got == value
    except GenlabError as e:
        assert "x must be" in str(e)
        assert not (isinstance(value, int) and not isinstance(value, bool) and value >= 1)
    try:
        got = check_number(value, "y", minimum=0)
        assert not isinstance(value, (bool, str)) and value is not None and math.isfinite(value) and value >= 0
    except GenlabError as e:
        assert "y must be" in str(e)


def test_brute_force_reference_enumerates_every_schedule():
    errors = torch.rand(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    costs = {c: schedule_cost(errors, (0, *c)) for c in itertools.combinations(range(1, 6), 2)}
    assert brute_force_statdp(errors, 3)[1] == min(costs.values())


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.data())
def test_mar_reveal_schedule_reveals_every_token_once_in_order(n, data):
    from genlab.schedulers.masking import mask_from_order, random_orders, reveal_counts

    k = data.draw(st.integers(1, n))
    counts = reveal_counts(n, k)
    assert len(counts) == k and sum(counts) == n and min(counts) >= 1
    orders = random_orders(2, n, torch.Generator().manual_seed(0))
    still = n
    for c in counts:  # the masks shrink: each step unmasks exactly its count, never re-masks a token
        before, still = mask_from_order(orders, still), still - c
        after = mask_from_order(orders, still)
        assert (before.sum(1) == still + c).all() and (after.sum(1) == still).all() and not (after & ~before).any()


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 200), st.integers(1, 12))
def test_key_step_groups_partition_the_steps(n, m):
    from genlab.acceleration.key_steps import key_groups, resolve_key_steps

    for spec in (m, "pro", "all"):
        keys = resolve_key_steps(spec, n)
        groups = key_groups(keys, n)
        assert keys[0] == 0 and keys == sorted(set(keys))
        assert [g[0] for g in groups] == keys and sum(groups, []) == list(range(n))
    assert len(resolve_key_steps(m, n)) == -(-n // m)
