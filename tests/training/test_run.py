from training.run import rank_cores


def test_each_local_rank_gets_its_own_block_of_cores():
    cores = [4, 5, 6, 7, 0, 1, 2, 3]  # as sched_getaffinity may list them
    blocks = [rank_cores(cores, r, 3) for r in range(3)]
    assert blocks == [[0, 1], [2, 3, 4], [5, 6, 7]]
    assert sorted(c for b in blocks for c in b) == sorted(cores)  # every core used once
    assert [rank_cores([0, 1], r, 1) for r in range(1)] == [[0, 1]]


def test_more_ranks_than_cores_share_cores():
    assert [rank_cores([0, 1], r, 4) for r in range(4)] == [[0], [1], [0], [1]]
