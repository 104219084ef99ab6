from docground.ingest.engines.reading_order import reading_order


def test_aligned_paragraph_gaps_do_not_interleave_columns():
    # Two columns whose paragraph gaps line up at the same height.
    left = [(0.1, 0.1, 0.45, 0.3), (0.1, 0.31, 0.45, 0.5)]
    right = [(0.55, 0.1, 0.9, 0.3), (0.55, 0.31, 0.9, 0.5)]
    assert reading_order(left + right) == [0, 1, 2, 3]


def test_full_width_title_then_columns_then_full_width_figure():
    boxes = [(0.1, 0.05, 0.9, 0.08), (0.1, 0.1, 0.45, 0.4), (0.55, 0.1, 0.9, 0.4), (0.1, 0.45, 0.9, 0.6),
             (0.1, 0.62, 0.45, 0.9), (0.55, 0.62, 0.9, 0.9)]
    assert reading_order(boxes) == [0, 1, 2, 3, 4, 5]


def test_a_label_far_below_one_column_starts_a_new_part():
    # An article's columns end; a section label sits alone well below the left column, then a new title.
    boxes = [(0.1, 0.06, 0.48, 0.28), (0.51, 0.06, 0.88, 0.28), (0.13, 0.35, 0.32, 0.37), (0.11, 0.38, 0.85, 0.43)]
    assert reading_order(boxes) == [0, 1, 2, 3]


def test_a_grid_of_cards_in_columns_reads_column_by_column():
    boxes = [(0.09, 0.22, 0.48, 0.44), (0.52, 0.22, 0.9, 0.44), (0.09, 0.5, 0.48, 0.9), (0.52, 0.5, 0.9, 0.9)]
    assert reading_order(boxes) == [0, 2, 1, 3]


def test_narrow_numbering_is_not_a_column():
    boxes = [(0.1, 0.1 + i * 0.05, 0.13, 0.13 + i * 0.05) for i in range(3)] + \
            [(0.15, 0.1 + i * 0.05, 0.9, 0.13 + i * 0.05) for i in range(3)]
    assert reading_order(boxes) == [0, 3, 1, 4, 2, 5]


def test_vertical_cjk_reads_columns_from_the_right():
    boxes = [(0.1, 0.1, 0.15, 0.9), (0.3, 0.1, 0.35, 0.9), (0.5, 0.1, 0.55, 0.9)]
    assert reading_order(boxes, right_to_left=True) == [2, 1, 0]
