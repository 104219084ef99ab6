"""The transformers backend through its real loading path: a tiny randomly initialised DeepSeek-OCR-2 and a
locally trained tokenizer, saved with save_pretrained and loaded back with `TransformersBackend.load`."""

from __future__ import annotations

import pytest
import torch
from PIL import Image, ImageDraw
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    DeepseekOcr2Config,
    DeepseekOcr2ForConditionalGeneration,
    DeepseekOcr2Processor,
    PreTrainedTokenizerFast,
)
from transformers.models.deepseek_ocr2 import DeepseekOcr2ImageProcessorPil

from docground.errors import OcrUnavailable
from docground.ingest.engines.deepseek_ocr2 import DeepseekOcr2Engine, PageRequest
from docground.ingest.engines.deepseek_ocr2.backend_transformers import NGramBan, TransformersBackend
from docground.ingest.engines.deepseek_ocr2.prompt import GROUNDING, Sampling, ladder, model_prompt
from docground.ingest.providers.image import ImagePage
from docground.ingest.schema import PageOutcome

BOS, EOS, PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"
SPECIAL = [BOS, EOS, PAD, "<image>", "<|grounding|>", "<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>", "<td>", "</td>"]


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["Convert the document to markdown. Free OCR. title text table [[1, 2, 3, 4]]"] * 10,
                            trainer)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   additional_special_tokens=SPECIAL[3:])


def tiny_config(tokenizer) -> DeepseekOcr2Config:
    """deps.md §7: the smallest shape the processor's 1024/768 views still fit (256 and 144 queries)."""
    text = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, n_routed_experts=4,
                n_shared_experts=1, num_experts_per_tok=2, n_group=1, topk_group=1,
                mlp_layer_types=["dense", "sparse"], bos_token_id=0, eos_token_id=1, pad_token_id=2,
                max_position_embeddings=4096)
    vision = dict(sam_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, global_attn_indexes=[1],
                                  output_channels=16, downsample_channels=[32, 64]),
                  encoder_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=1))
    return DeepseekOcr2Config(text_config=text, vision_config=vision,
                              image_token_id=tokenizer.convert_tokens_to_ids("<image>"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-deepseek-ocr2")
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    DeepseekOcr2ForConditionalGeneration(tiny_config(tokenizer)).save_pretrained(path)
    DeepseekOcr2Processor(image_processor=DeepseekOcr2ImageProcessorPil(), tokenizer=tokenizer).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def backend(model_dir):
    return TransformersBackend.load(model_dir, device="cpu", batch_size=2)


def page_image(shade: int) -> Image.Image:
    image = Image.new("RGB", (700, 500), "white")  # within 768: the global view alone, quick on a CPU
    ImageDraw.Draw(image).rectangle([50, 50, 400, 120], fill=(shade, shade, shade))
    return image


def test_loads_from_a_local_directory_and_generates_a_batch(backend):
    assert isinstance(backend.model, DeepseekOcr2ForConditionalGeneration) and backend.model.dtype == torch.float32
    requests = [PageRequest(page_image(s), GROUNDING, Sampling(max_tokens=12, ignore_eos=True)) for s in (0, 90, 180)]
    gens = backend.generate(requests)
    assert len(gens) == 3
    assert all(g.finish_reason == "length" and g.tokens == 12 and g.text for g in gens)


def test_the_ngram_ban_holds_inside_real_generation(backend):
    inputs = backend.processor(images=[page_image(0)], text=[model_prompt(GROUNDING)], return_tensors="pt")
    prompt_len = inputs["input_ids"].shape[1]

    def run(**extra):
        with torch.inference_mode():
            ids = backend.model.generate(**inputs, do_sample=False, max_new_tokens=40, min_new_tokens=40, **extra)
        return ids[0, prompt_len:].tolist()

    def repeats(ids, n=3, window=50):
        return any(tuple(ids[i:i + n]) == tuple(ids[j:j + n])
                   for j in range(len(ids) - n + 1) for i in range(max(0, j - window + n), j))

    assert repeats(run())  # a random model loops: the ban has something to prevent
    guarded = run(logits_processor=[NGramBan(Sampling(ngram_size=3, ngram_window=50, exempt_token_ids=()))])
    assert not repeats(guarded)


def test_engine_on_the_transformers_backend_records_why_the_page_failed(backend):
    (layout,) = DeepseekOcr2Engine(backend, attempts=ladder(max_tokens=8)).parse_many(
        [ImagePage(1, page_image(0), 72.0)], "doc")
    assert layout.engine == "deepseek-ocr2" and layout.blocks == []
    assert (layout.reason.startswith("DeepSeek-OCR-2 failed: ")
            and "no text layer and no fallback engine" in layout.reason)
    assert layout.outcome is PageOutcome.UNREAD


def test_a_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(OcrUnavailable, match="local model directory"):
        TransformersBackend.load(tmp_path / "not-there")
