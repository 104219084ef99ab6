"""The grounding contract: every span of every chunk points at exactly the text it came from."""

from hypothesis import given, settings
from hypothesis import strategies as st

from docground.ingest.builders import BlockDraft, TextLine, build_block
from docground.ingest.chunking import Chunker, ChunkerConfig
from docground.ingest.schema import BlockKind, PageLayout


def words(texts):
    return [len(t.split()) for t in texts]


def make_layouts(pages):
    """pages: list of lists of (kind, [line texts])."""
    layouts = []
    for pno, blocks in enumerate(pages, start=1):
        built = []
        for i, (kind, lines) in enumerate(blocks):
            tl = [TextLine(text=t, bbox=(0.1, 0.05 + 0.02 * (i * 10 + j), 0.9, 0.065 + 0.02 * (i * 10 + j)))
                  for j, t in enumerate(lines)]
            level = 2 if kind == BlockKind.heading else None
            built.append(build_block(BlockDraft(kind, tl, level=level), f"d-p{pno}-b{i}", pno))
        layouts.append(PageLayout(page=pno, width_pt=595, height_pt=842, blocks=built, engine="t", engine_version="1"))
    return layouts


def source_texts(layouts):
    """(block id, line box) → the line's text in its block."""
    out = {}
    for lay in layouts:
        for b in lay.blocks:
            for ln in b.lines:
                out[(b.id, tuple(ln.bbox))] = b.markdown[ln.start:ln.end]
    return out


def check_spans(chunks, layouts):
    truth = source_texts(layouts)
    for c in chunks:
        last = -1
        for s in c.spans:
            assert c.text[s.char_start:s.char_end] == truth[(s.block_id, tuple(s.bbox))]
            assert s.char_start >= last, "spans are ordered"
            last = s.char_end


def test_spans_cross_pages_and_point_at_their_text():
    layouts = make_layouts([
        [(BlockKind.heading, ["Methods"]), (BlockKind.text, [f"first page line {i} about layout" for i in range(6)])],
        [(BlockKind.text, [f"second page line {i} continues the paragraph" for i in range(6)])],
    ])
    chunks = Chunker(ChunkerConfig(max_tokens=200, overlap_tokens=0), words).chunk(layouts, "d", "fp")
    assert len(chunks) == 1
    assert chunks[0].pages == [1, 2]
    assert chunks[0].text.startswith("## Methods\n\nfirst page line 0")
    check_spans(chunks, layouts)


def test_overlap_repeats_lines_with_their_spans():
    layouts = make_layouts([[(BlockKind.text, [f"line number {i} of the long paragraph" for i in range(30)])]])
    chunks = Chunker(ChunkerConfig(max_tokens=40, overlap_tokens=8, min_tokens=1), words).chunk(layouts, "d", "fp")
    assert len(chunks) > 3
    check_spans(chunks, layouts)
    for a, b in zip(chunks, chunks[1:]):
        assert a.spans[-1].bbox == b.spans[0].bbox, "the next chunk starts with the last line of the previous"


def test_a_chunk_opens_at_the_start_of_a_sentence_not_in_its_middle():
    """Each sentence runs over three lines; a chunk that would open on its second or third line repeats the
    previous chunk's lines back to the sentence's first, so the sentence is whole in one chunk."""
    lines = []
    for i in range(12):
        lines += [f"Sentence {i} opens on this line", "and goes on over this one", f"to its end here {i}."]
    layouts = make_layouts([[(BlockKind.text, lines)]])
    config = ChunkerConfig(max_tokens=40, overlap_tokens=4, min_tokens=1, sentence_overlap_tokens=15)
    chunks = Chunker(config, words).chunk(layouts, "d", "fp")
    assert len(chunks) > 4
    check_spans(chunks, layouts)
    for chunk in chunks:
        assert chunk.text.startswith("Sentence "), chunk.text[:40]
        assert max(words([chunk.text])) <= 40
    whole = {f"Sentence {i} opens on this line and goes on over this one to its end here {i}." for i in range(12)}
    assert all(any(sentence in c.text for c in chunks) for sentence in whole)


def test_headings_open_chunks_and_give_the_section_path():
    layouts = make_layouts([[
        (BlockKind.heading, ["Introduction"]), (BlockKind.text, ["intro words " * 10]),
        (BlockKind.heading, ["Results"]), (BlockKind.text, ["result words " * 10]),
    ]])
    chunks = Chunker(ChunkerConfig(max_tokens=200, min_tokens=10), words).chunk(layouts, "d", "fp")
    assert [c.text.split("\n")[0] for c in chunks] == ["## Introduction", "## Results"]
    assert all(c.headings == [] for c in chunks)


def test_tables_stay_whole_and_oversized_tables_repeat_their_header():
    header = "| Region | Revenue |"
    rows = [f"| R{i} | {i * 100} |" for i in range(12)]
    md = header + "\n| --- | --- |\n" + "\n".join(rows)

    def table_layout():
        from docground.ingest.schema import Block, Line
        lines, pos = [], 0
        for i, r in enumerate([header] + rows):
            start = md.index(r, pos)
            lines.append(Line(bbox=(0.1, 0.1 + i * 0.02, 0.9, 0.115 + i * 0.02), start=start + 2,
                              end=start + len(r) - 2))
            pos = start + len(r)
        block = Block(id="d-p1-b1", page=1, kind=BlockKind.table, markdown=md, bbox=(0.1, 0.1, 0.9, 0.4), lines=lines)
        lay = make_layouts([[(BlockKind.text, ["intro sentence before the table"])]])[0]
        lay.blocks.append(block)
        return [lay]

    layouts = table_layout()
    whole = Chunker(ChunkerConfig(max_tokens=200), words).chunk(layouts, "d", "fp")
    assert len(whole) == 1 and md in whole[0].text
    check_spans(whole, layouts)

    split = Chunker(ChunkerConfig(max_tokens=20), words).chunk(layouts, "d", "fp")
    table_chunks = [c for c in split if "| R" in c.text]
    assert len(table_chunks) > 1
    for c in table_chunks:
        assert c.text.startswith(header + "\n| --- | --- |\n"), c.text
    check_spans(split, layouts)


def test_furniture_stays_out_of_chunks():
    layouts = make_layouts([[(BlockKind.page_header, ["Journal header"]), (BlockKind.text, ["body text here"]),
                             (BlockKind.page_number, ["7"])]])
    chunks = Chunker(ChunkerConfig(), words).chunk(layouts, "d", "fp")
    assert [c.text for c in chunks] == ["body text here"]


def test_chunk_ids_are_stable_and_depend_on_the_pipeline():
    layouts = make_layouts([[(BlockKind.text, [f"stable line {i}" for i in range(40)])]])
    chunker = Chunker(ChunkerConfig(max_tokens=30, min_tokens=1), words)
    first = [c.id for c in chunker.chunk(layouts, "d", "fp1")]
    assert first == [c.id for c in chunker.chunk(layouts, "d", "fp1")]
    assert not set(first) & {c.id for c in chunker.chunk(layouts, "d", "fp2")}


line_text = (st.text(alphabet=st.sampled_from("abc xyz-文字한국 .,"), min_size=1, max_size=40)
             .map(str.strip).filter(bool))
block = st.tuples(st.sampled_from([BlockKind.text, BlockKind.heading, BlockKind.list, BlockKind.code,
                                   BlockKind.caption]),
                  st.lists(line_text, min_size=1, max_size=6))


@settings(max_examples=150, deadline=None)
@given(pages=st.lists(st.lists(block, min_size=1, max_size=6), min_size=1, max_size=3),
       max_tokens=st.integers(3, 60), overlap=st.integers(0, 10))
def test_any_layout_keeps_the_grounding_contract(pages, max_tokens, overlap):
    layouts = make_layouts(pages)
    chunks = Chunker(ChunkerConfig(max_tokens=max_tokens, overlap_tokens=overlap, min_tokens=5),
                     lambda ts: [max(1, len(t) // 4) for t in ts]).chunk(layouts, "d", "fp")
    check_spans(chunks, layouts)
    covered = {(s.block_id, tuple(s.bbox)) for c in chunks for s in c.spans}
    assert covered == set(source_texts(layouts)), "every line lands in some chunk"
