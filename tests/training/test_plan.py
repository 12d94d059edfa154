import pytest

from training.plan import FIELD_GB, FULL_RESOLUTION_PARAMETERS, PlanError, field_gb, plan, rank_gb

FIELD = FIELD_GB["bf16"]  # 1024x1280


def test_a_roomy_node_takes_the_whole_batch_per_rank_in_one_pass():
    p = plan(cores=8, memory_gb=64, global_batch=16, per_image_gb=FIELD, ranks=2)
    assert (p.ranks, p.threads_per_rank, p.micro_batch, p.accumulation, p.global_batch) == (2, 4, 8, 1, 16)
    capped = plan(8, 64, 16, FIELD, ranks=2, max_micro_batch=2)  # --batch-size caps the micro-batch
    assert (capped.micro_batch, capped.accumulation, capped.global_batch) == (2, 4, 16)
    assert capped.peak_gb < p.peak_gb  # fewer fields in memory at once: a lower peak for the same batch


def test_short_memory_is_made_up_by_accumulation():
    # 2.9 GB per rank holds 3 fields; 3 does not divide the 4 per rank, so 2 fields x 2 micro-batches.
    p = plan(cores=2, memory_gb=5.8, global_batch=8, per_image_gb=FIELD, ranks=2)
    assert (p.micro_batch, p.accumulation, p.global_batch) == (2, 2, 8)
    assert p.micro_batch * p.accumulation * p.ranks * p.nodes == p.global_batch


@pytest.mark.parametrize("memory_gb", [2.0, 3.5, 6.0, 12.0, 48.0])
@pytest.mark.parametrize("ranks", [1, 2, 4])
def test_the_estimated_peak_never_exceeds_the_memory(memory_gb, ranks):
    try:
        p = plan(cores=16, memory_gb=memory_gb, global_batch=32, per_image_gb=FIELD, ranks=ranks)
    except PlanError:
        assert ranks * (rank_gb(FULL_RESOLUTION_PARAMETERS, ranks > 1) + FIELD) > memory_gb
        return
    assert p.peak_gb <= memory_gb and p.micro_batch * p.accumulation * ranks == 32


def test_when_one_field_per_rank_does_not_fit_the_error_names_the_largest_plan_that_does():
    with pytest.raises(PlanError, match=r"4 rank\(s\) .* > 6\.0 GB .* 3 rank\(s\) per node.*--nproc-per-node 3"):
        plan(cores=8, memory_gb=6.0, global_batch=12, per_image_gb=FIELD, ranks=4)
    with pytest.raises(PlanError, match="no plan fits"):
        plan(cores=8, memory_gb=1.0, global_batch=12, per_image_gb=FIELD, ranks=1)


def test_without_ranks_one_per_numa_node_fewer_if_memory_is_short():
    assert plan(cores=64, memory_gb=100, global_batch=64, per_image_gb=FIELD, numa_nodes=2).ranks == 2
    assert plan(cores=64, memory_gb=2.5, global_batch=64, per_image_gb=FIELD, numa_nodes=2).ranks == 1


def test_the_global_batch_must_split_over_the_ranks_and_nodes():
    with pytest.raises(PlanError, match="multiple of 4"):
        plan(cores=8, memory_gb=64, global_batch=6, per_image_gb=FIELD, ranks=2, nodes=2)


def test_memory_per_field_scales_with_pixels():
    assert field_gb((1024, 1280), "fp32") == pytest.approx(FIELD_GB["fp32"])
    assert field_gb((512, 640), "bf16") == pytest.approx(FIELD / 4)
