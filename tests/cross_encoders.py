"""Cross-encoders built here and saved to a folder (no re-ranker weights can be downloaded).

``tiny_fruit_ranker``: a 1-layer BERT whose weights are set by hand so that its preference is known — the
more of a pair's tokens are ``mango``, the higher its score (and nothing else counts). ``random_like``:
a randomly initialised BERT cross-encoder of a given shape on the bundled model's tokenizer, for timing
(``bench/rerank_cost.py``): its scores mean nothing, its cost is that of a trained one of the same shape.
"""

from __future__ import annotations

from pathlib import Path

MARKER = "mango"
WORDS = ("apple banana cherry grape lemon mango olive peach plum melon kiwi lime fig pear date "
         "how do i a the which fruit is best").split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_fruit_ranker(folder: Path, marker: str = MARKER) -> Path:
    """Save the hand-set 1-layer cross-encoder (hidden size 8, ~2 k weights) in ``folder``.

    Every token embeds to the same zero-mean pattern except ``marker`` (``mango`` unless given; any other word
    outside :data:`WORDS` is ``[UNK]``), which adds +3 in dimension 0.
    Attention queries and keys are zero, so the [CLS] position averages all tokens (values and output
    projections are the identity); the feed-forward block is zero; pooler and classifier read dimension 0.
    So the logit rises with the share of ``marker`` tokens in the pair; a pair without one scores exactly 0.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    vocab = {w: i for i, w in enumerate(dict.fromkeys(SPECIAL + WORDS + [marker]))}
    hidden = 8
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=1, num_attention_heads=1,
                        intermediate_size=4, max_position_embeddings=128, num_labels=1,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        emb = model.bert.embeddings.word_embeddings.weight
        emb[:] = torch.tensor([0.0, 1, -1, 1, -1, 1, -1, 0])
        emb[vocab[marker], 0] = 3.0
        layer = model.bert.encoder.layer[0]
        for norm in (model.bert.embeddings.LayerNorm, layer.attention.output.LayerNorm, layer.output.LayerNorm):
            norm.weight.fill_(1.0)
        layer.attention.self.value.weight[:] = torch.eye(hidden)
        layer.attention.output.dense.weight[:] = torch.eye(hidden)
        model.bert.pooler.dense.weight[0, 0] = 1.0
        model.classifier.weight[0, 0] = 1.0
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    BertTokenizer(vocab=vocab, model_max_length=128).save_pretrained(folder)
    return folder


def random_like(folder: Path, *, layers: int = 6, hidden: int = 384, heads: int = 12, intermediate: int = 1536,
                labels: int = 1, seed: int = 0) -> Path:
    """Save a randomly initialised BERT cross-encoder of this shape (default: MiniLM-L6, as
    cross-encoder/ms-marco-MiniLM-L-6-v2) with the bundled all-MiniLM-L6-v2's tokenizer (the same
    30,522-word uncased BERT vocabulary), max 512 tokens."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from ragtrail.stages.embedding import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("all-MiniLM-L6-v2"))
    tokenizer.model_max_length = 512
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=intermediate, max_position_embeddings=512,
                        num_labels=labels)
    folder.mkdir(parents=True, exist_ok=True)
    BertForSequenceClassification(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
