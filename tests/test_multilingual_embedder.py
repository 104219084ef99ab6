"""A multilingual sentence-transformers model from a local directory, end to end through the service.

The model is built here: a tiny randomly initialised BERT under a WordPiece tokenizer trained on the
test's own Chinese, Japanese, Korean, French and German text. Random weights give no meaningful dense
similarity, so the checks rest on what is deterministic: the service loads that directory (its vector
size and window, not MiniLM's), ingest completes and the store holds the chunks with its vectors, and a
query whose words lie in one chunk only is found through the hybrid search's sparse side (in reciprocal
rank fusion a chunk both searches return outranks any chunk only the dense side returns).
"""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from docground.retrieval import sparse
from docground_testing.citecheck import quote_under_boxes
from docground_testing.pdfgen import A4

HIDDEN = 48  # the tiny model's vector size: not MiniLM's 384
WINDOW = 128

# (font, text) lines per page; the first line of a page is drawn large, as its heading.
PAGES = [
    [("china-s", "多语言知识库"),
     ("china-s", "扫描的合同和旧报告没有文字层，必须经过光学字符识别才能被检索。"),
     ("china-s", "本系统读取每一页，记录段落和文字行的位置。"),
     ("china-s", "回答问题时，系统标出作为依据的准确行。")],
    [("helv", "Base de connaissances multilingue"),
     ("helv", "Les contrats numérisés passent par la reconnaissance optique des caractères."),
     ("helv", "Chaque page est lue et la position de chaque ligne est enregistrée."),
     ("helv", "La réponse cite la ligne exacte qui a servi de preuve."),
     ("helv", "Une page tournée est redressée avant la lecture, puis ses lignes sont rangées.")],
    [("helv", "Mehrsprachige Wissensbasis"),
     ("helv", "Die gescannten Verträge werden Seite für Seite gelesen."),
     ("japan", "日本語の文書を検索します。"),
     ("korea", "한국어 문서를 검색합니다.")],
]
# (query, the page its words are on, a phrase of that page the cited quote holds)
QUERIES = [
    ("光学字符识别", 1, "必须经过光学字符识别才能被检索"),
    ("reconnaissance optique des caractères", 2, "reconnaissance optique des caractères"),
]


def multilingual_pdf() -> bytes:
    doc = pymupdf.open()
    for lines in PAGES:
        page = doc.new_page(width=A4[0], height=A4[1])
        y = 160.0  # below the band where a top line reads as a running header
        for i, (font, text) in enumerate(lines):
            size = 18.0 if i == 0 else 11.0
            page.insert_text((72, y), text, fontname=font, fontsize=size)
            y += size * 2.0
    return doc.tobytes()


def build_tiny_multilingual_model(root: Path) -> Path:
    """A randomly initialised BERT (2 layers, 48 wide) with mean pooling and normalisation, saved as a
    sentence-transformers directory; its tokenizer is trained offline on the pages' text."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    # handle_chinese_chars puts CJK ideographs one per token, as multilingual BERT does.
    tok.normalizer = normalizers.BertNormalizer(handle_chinese_chars=True, strip_accents=False, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    corpus = [text for lines in PAGES for _, text in lines] + [q for q, _, _ in QUERIES]
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=2000, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                        model_max_length=WINDOW)

    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=HIDDEN, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=2 * HIDDEN, max_position_embeddings=WINDOW)
    hf_dir = root / "hf"
    BertModel(config).save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)

    transformer = Transformer(str(hf_dir), max_seq_length=WINDOW)
    model = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean"),
                                         Normalize()], device="cpu")
    out = root / "tiny-multilingual"
    model.save(str(out))
    return out


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_multilingual_model(tmp_path_factory.mktemp("model"))


def test_the_test_data_puts_each_querys_words_on_one_page_only():
    for query, page, phrase in QUERIES:
        wanted = set(sparse.terms(query))
        for pno, lines in enumerate(PAGES, start=1):
            found = wanted & set(sparse.terms(" ".join(text for _, text in lines)))
            assert found == (wanted if pno == page else set()), (query, pno, found)


def test_the_tiny_tokenizer_covers_every_language(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    for lines in PAGES:
        for _, text in lines:
            assert tokenizer.unk_token_id not in tokenizer(text)["input_ids"], text


def test_a_local_multilingual_model_works_end_to_end(tiny_model_dir, tmp_path, monkeypatch):
    from docground.service import Docground
    from docground.settings import Settings

    monkeypatch.setenv("DOCGROUND_EMBEDDING_MODEL", str(tiny_model_dir))
    monkeypatch.delenv("DOCGROUND_QDRANT_URL", raising=False)  # the embedded store, whose vectors are read below
    settings = Settings(home=tmp_path / "home")
    assert settings.embedding_model == str(tiny_model_dir)
    svc = Docground(settings)
    try:
        # The directory's model, not the packaged MiniLM (384 wide, a 256-token window).
        assert svc.embedder.dimension == HIDDEN
        assert svc.embedder.window == WINDOW
        assert svc.pipeline.chunker.config.max_tokens == svc.embedder.default_chunk_tokens() == WINDOW - 32
        assert svc.embedder.embed_query("光学字符识别").shape == (HIDDEN,)

        data = multilingual_pdf()
        result = svc.ingest("multilingual", "multilingual.pdf", data)
        assert result.status == "ready", result.error
        assert result.pages == len(PAGES) and result.chunks == len(PAGES)  # each page's heading opens a chunk
        store = svc.store("multilingual")
        assert store.count() == store.count(result.document_id) == result.chunks

        # Every page's text reached the store, and the stored vectors are the tiny model's.
        hits = svc.retrieve("multilingual", "多语言知识库", top_k=50)
        assert len(hits) == result.chunks
        stored = "\n".join(h.payload["text"] for h in hits)
        for lines in PAGES:
            for _, text in lines:
                assert text in stored, text
        points = store.shard.retrieve([h.id for h in hits], with_payload=False, with_vector=True)
        assert len(points) == result.chunks
        assert all(len(p.vector["dense"]) == HIDDEN for p in points)

        for query, page, phrase in QUERIES:
            # A random model's dense ranking is noise, which the hybrid search's fusion may put first; the
            # answer stage reranks the retrieved chunks by the query's words, so its first chunk is the page's.
            response = svc.query("multilingual", query, top_k=3, mode="extractive")
            top, *rest = response.chunks
            assert phrase in top.text and {s.page for s in top.spans} == {page}, (query, top)
            assert len(rest) == len(PAGES) - 1 and all(phrase not in c.text for c in rest)
            assert response.answer_mode == "extractive" and response.citations, response
            for c in response.citations:
                assert c.page == page and phrase in c.quote, (query, c.page, c.quote)
                assert c.page_size_pt == A4
                for x0, y0, x1, y1 in c.boxes:
                    assert 0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0
                assert quote_under_boxes(data, c), c
    finally:
        svc.close()
