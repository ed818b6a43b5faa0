"""Build tiny random BLOOM, detoxify and sentence-encoder models on disk, so rail runs end to end offline.

Use them to try rail offline or in tests: ``python -m rail.tiny DIR`` builds all three and prints where they
are. The weights are random, so the text they produce is gibberish and their toxicity scores mean nothing;
what is real is everything around them — the files, the loading code, tokenization, generation and scoring.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path

# Text in BLOOM's largest languages, so the tiny tokenizer has pieces for every script rail handles.
_CORPUS = (
    "The model writes a short answer. Translate to English: Je t'aime. Story (in Spanish):",
    "What is the capital of France? Paris is the capital of France.",
    "Le modèle écrit une réponse courte. Quelle est la capitale de la France ?",
    "El modelo escribe una respuesta corta. ¿Cuál es la capital de Francia?",
    "O modelo escreve uma resposta curta. Qual é a capital da França?",
    "模型写了一个简短的回答。法国的首都是哪里？你认为这句话的立场是赞扬、中立还是批评?",
    "يكتب النموذج إجابة قصيرة. ما هي عاصمة فرنسا؟",
    "मॉडल एक छोटा उत्तर लिखता है। फ्रांस की राजधानी क्या है?",
    "Mô hình viết một câu trả lời ngắn. Mạng neural nhân tạo.",
    "Model menulis jawaban singkat. Apa ibu kota Prancis?",
    "Mfano unaandika jibu fupi. Mji mkuu wa Ufaransa ni upi?",
    "def add(a, b):\n    return a + b  # Python code 0123456789",
)

#: Detoxify's label set for its ``unbiased`` model: the toxicity labels and the identity labels (bias scores).
DETOXIFY_LABELS = (
    "toxicity",
    "severe_toxicity",
    "obscene",
    "identity_attack",
    "insult",
    "threat",
    "sexual_explicit",
    "male",
    "female",
    "homosexual_gay_or_lesbian",
    "christian",
    "jewish",
    "muslim",
    "black",
    "white",
    "psychiatric_or_mental_illness",
)

_BLOOM_CARD = """---
license: bigscience-bloom-rail-1.0
language:
- en
- fr
- es
- zh
- ar
- hi
pipeline_tag: text-generation
---
# tiny-bloom (random weights)

A two-layer BLOOM with random weights and a locally trained tokenizer, built by `rail.tiny` for offline tests.
It produces gibberish. It carries the BigScience BLOOM RAIL License v1.0 so licence detection is exercised.
"""


def build_tiny_bloom(directory: str | Path, *, seed: int = 0) -> Path:
    """Write a two-layer random BLOOM, its tokenizer and a RAIL-licensed README.md into ``directory``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import BloomConfig, BloomForCausalLM, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    specials = ["<unk>", "<s>", "</s>", "<pad>"]  # BLOOM's own order: ids 0..3
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    # Byte-level pieces, as in BLOOM's tokenizer, so any text (any script, emoji) encodes without <unk>.
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        padding_side="left",
    )
    tokenizer.save_pretrained(out)

    config = BloomConfig(
        vocab_size=backend.get_vocab_size(),
        hidden_size=32,
        n_layer=2,
        n_head=4,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
    )
    torch.manual_seed(seed)
    model = BloomForCausalLM(config)
    hf_logging.disable_progress_bar()  # a tiny model needs no "Writing model shards" bar
    model.save_pretrained(out)
    (out / "README.md").write_text(_BLOOM_CARD, encoding="utf-8")
    return out


def build_tiny_detoxify(
    directory: str | Path, *, seed: int = 0, label_bias: Mapping[str, float] | None = None
) -> tuple[Path, Path]:
    """Write a tiny detoxify-format checkpoint and its local Hugging Face config directory.

    Returns ``(checkpoint_path, config_dir)``: point ``RAIL_DETOXIFY_CHECKPOINT`` and ``RAIL_DETOXIFY_CONFIG``
    at them. The checkpoint has detoxify's layout (``config.arch.args``, ``config.dataset.args.classes``,
    ``state_dict``) and the label set of detoxify's ``unbiased`` model. Scores sit near sigmoid(-3) ≈ 0.05;
    ``label_bias`` sets the classifier bias of chosen labels (e.g. ``{"threat": 6.0}`` scores every text
    ≈ 0.998 on threat), so tests can drive the threshold rules.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    out = Path(directory)
    config_dir = out / "config"
    vocab_size = _bert_tokenizer(config_dir)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    config.num_labels = len(DETOXIFY_LABELS)
    config.save_pretrained(config_dir)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    # A negative classifier bias keeps the random scores low, as real scores are on ordinary text.
    with torch.no_grad():
        model.classifier.bias.fill_(-3.0)
        for label, bias in (label_bias or {}).items():
            model.classifier.bias[DETOXIFY_LABELS.index(label)] = bias
    checkpoint = out / "tiny-detoxify.ckpt"
    torch.save(
        {
            "config": {
                "arch": {
                    "args": {
                        "model_type": "bert-base-uncased",
                        "model_name": "BertForSequenceClassification",
                        "tokenizer_name": "BertTokenizer",
                        "num_classes": len(DETOXIFY_LABELS),
                    }
                },
                "dataset": {"args": {"classes": list(DETOXIFY_LABELS)}},
            },
            "state_dict": model.state_dict(),
        },
        checkpoint,
    )
    return checkpoint, config_dir


def _bert_tokenizer(directory: Path) -> int:
    """Write a word-and-character BERT tokenizer for the corpus into ``directory``; return its vocab size."""
    from transformers import BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    words = sorted({w for line in _CORPUS for w in line.replace("\n", " ").lower().split()})
    chars = sorted({c for line in _CORPUS for c in line.lower() if not c.isspace()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(w for w in words if w not in chars)]
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizer(vocab=str(vocab_file), do_lower_case=True).save_pretrained(directory)
    return len(vocab)


def build_tiny_encoder(directory: str | Path, *, seed: int = 0) -> Path:
    """Write a two-layer random BERT encoder and its tokenizer into ``directory``.

    It is a sentence-embedding model for ``RAIL_EMBEDDER=transformers:<directory>``; its vectors carry no
    meaning but are deterministic, so the transformers backend and its calibration run offline.
    """
    import torch
    from transformers import BertConfig, BertModel
    from transformers.utils import logging as hf_logging

    out = Path(directory)
    vocab_size = _bert_tokenizer(out)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    torch.manual_seed(seed)
    hf_logging.disable_progress_bar()
    BertModel(config).save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    """Build the tiny models under DIR and print their paths as JSON (``python -m rail.tiny DIR``)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m rail.tiny DIR", file=sys.stderr)
        return 2
    root = Path(args[0])
    bloom = build_tiny_bloom(root / "tiny-bloom")
    checkpoint, config_dir = build_tiny_detoxify(root / "tiny-detoxify")
    encoder = build_tiny_encoder(root / "tiny-encoder")
    print(
        json.dumps(
            {"model": str(bloom), "detoxify_checkpoint": str(checkpoint), "detoxify_config": str(config_dir),
             "embedder": f"transformers:{encoder}"},
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
