"""A tiny random BERT teacher with its own WordPiece vocabulary, built offline, for tests.

The model has the same layout as a real teacher folder (config.json, model.safetensors,
vocab.txt, tokenizer files), so every code path that takes a teacher can run on it in
milliseconds: loading, fine-tuning, distilling, exporting.
"""

from __future__ import annotations

import string
from pathlib import Path

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# Common English words: enough for the synthetic sentiment sentences the tests build (including
# the positive words good/great/fine and negative words bad/awful/poor) and for short free text.
COMMON_WORDS = """
the a an and or but not no yes of to in on at by for with from about as into over after before
under between through during without again very really quite too so just only also even still
is are was were be been being am has have had do does did will would can could should may might
must shall i you he she it we they me him her us them my your his its our their this that these
those there here what which who whom whose when where why how all any both each few more most
other some such than then once own same out up down off above below if while because until
good great fine nice excellent wonderful lovely pleasant happy glad best better
bad awful poor terrible horrible sad worst worse boring dull ugly
movie film book story show song game food meal place hotel room service staff team plot actor
music day night time year week way man woman people child friend family city house car phone
work job life world home school water money thing part case point hand eye head face word name
think know see look want give use find tell ask seem feel try leave call make take come go get
say said made took came went got told felt found gave thought knew saw looked wanted used
new old big small long short high low large little young early late hard easy real true whole
first last next other right left sure free full clear open close simple strong weak
one two three four five six seven eight nine ten
really overall actually certainly probably maybe perhaps always never often sometimes usually
""".split()

# Word pieces so unknown words split into known pieces instead of becoming [UNK].
WORD_PIECES = ["##s", "##es", "##ed", "##ing", "##ly", "##er", "##est", "##ness", "##ful", "##less", "##able"]

PUNCTUATION = list(".,!?;:'\"-()")


def tiny_vocab() -> list[str]:
    """The tiny vocabulary: specials, words, word pieces, letters, digits and punctuation, no duplicates.

    Returns:
        Tokens in id order; `[PAD]` is id 0 as in BERT.
    """
    tokens = list(SPECIAL_TOKENS) + COMMON_WORDS + WORD_PIECES
    tokens += list(string.ascii_lowercase) + ["##" + c for c in string.ascii_lowercase]
    tokens += list(string.digits) + ["##" + c for c in string.digits] + PUNCTUATION
    seen: set[str] = set()
    return [t for t in tokens if not (t in seen or seen.add(t))]


def make_tiny_teacher(
    path: Path, hidden: int = 64, layers: int = 6, heads: int = 4, intermediate: int = 128, seed: int = 0
) -> Path:
    """Write a random BERT encoder and a WordPiece tokenizer to `path`, without any network.

    Six layers by default so the default search space derives three blocks of two layers.

    Args:
        path: Folder to write (created if missing; files in it are overwritten).
        hidden: Hidden size; must be divisible by `heads`.
        layers: Number of transformer layers.
        heads: Attention heads per layer.
        intermediate: FFN inner size.
        seed: Seed of the random weights; equal seeds write equal weights.

    Returns:
        `path`, ready for `resolve_teacher` / `load_teacher` / `AutoTokenizer.from_pretrained`.
    """
    import torch
    from transformers import BertConfig, BertModel

    from slimformer.supernet.teacher import quiet_transformers

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = tiny_vocab()

    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=128,
        type_vocab_size=2,
        pad_token_id=0,
        architectures=["BertModel"],
    )
    # fork_rng: seeding must not disturb the caller's global torch RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config)
    with quiet_transformers():
        model.save_pretrained(path)

    _write_tokenizer(path, vocab)
    return path


def _write_tokenizer(path: Path, vocab: list[str]) -> None:
    """Write vocab.txt, tokenizer.json and tokenizer_config.json for a lower-casing BERT WordPiece.

    Built with the `tokenizers` library directly rather than through a transformers tokenizer class:
    the constructors of those classes differ between transformers 4 and 5, the files do not.

    Args:
        path: Folder to write into.
        vocab: Tokens in id order; must hold the five BERT special tokens.
    """
    import json

    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    ids = {token: i for i, token in enumerate(vocab)}
    tokenizer = Tokenizer(WordPiece(ids, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(
        lowercase=True, clean_text=True, handle_chinese_chars=True
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    tokenizer.save(str(path / "tokenizer.json"))

    specials = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                "mask_token": "[MASK]"}
    # tokenizer_class "BertTokenizer": AutoTokenizer picks the fast (tokenizers-backed) class for it.
    config = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 128, **specials}
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (path / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n", encoding="utf-8")


FAMILIES = ("bert", "roberta", "distilbert", "electra")


def make_tiny_family_teacher(
    family: str, path: Path, labels: list[str] | None = None, hidden: int = 32, layers: int = 2, heads: int = 2,
    intermediate: int = 64, seed: int = 0,
) -> Path:
    """Write a random `<Family>ForSequenceClassification` with save_pretrained, and the tiny tokenizer.

    What a user's own fine-tuned classifier folder looks like, for each supported family: the test
    teacher of "the teacher as given". Every family gets the same WordPiece tokenizer (its pad
    token is id 0, so RoBERTa's pad_token_id is 0 too and its positions start at 1).

    Args:
        family: "bert", "roberta", "distilbert" or "electra".
        path: Folder to write (created if missing).
        labels: The head's label names (id2label); None leaves transformers' LABEL_0, LABEL_1.
        hidden, layers, heads, intermediate: Encoder size.
        seed: Seed of the random weights.

    Returns:
        `path`.
    """
    import torch
    import transformers

    from slimformer.supernet.teacher import quiet_transformers

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = tiny_vocab()
    n = len(labels) if labels else 2
    common = dict(vocab_size=len(vocab), pad_token_id=0, num_labels=n)
    if labels:
        common.update(id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})
    bertish = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                   intermediate_size=intermediate)
    if family == "bert":
        config = transformers.BertConfig(**common, **bertish, max_position_embeddings=128)
    elif family == "roberta":  # 128 usable positions after the padding row
        config = transformers.RobertaConfig(**common, **bertish, max_position_embeddings=130, type_vocab_size=1,
                                            bos_token_id=2, eos_token_id=3)
    elif family == "distilbert":
        config = transformers.DistilBertConfig(**common, dim=hidden, n_layers=layers, n_heads=heads,
                                               hidden_dim=intermediate, max_position_embeddings=128)
    elif family == "electra":
        config = transformers.ElectraConfig(**common, **bertish, embedding_size=hidden, max_position_embeddings=128)
    else:
        raise ValueError(f"family {family!r} not in {FAMILIES}")
    name = {"bert": "Bert", "roberta": "Roberta", "distilbert": "DistilBert", "electra": "Electra"}[family]
    config.architectures = [f"{name}ForSequenceClassification"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(transformers, f"{name}ForSequenceClassification")(config)
        with torch.no_grad():  # LayerNorms away from 1/0 and a head with signal, so a lost piece shows
            for module in model.modules():
                if isinstance(module, torch.nn.LayerNorm):
                    module.weight.add_(torch.randn_like(module.weight) * 0.2)
                    module.bias.add_(torch.randn_like(module.bias) * 0.2)
            for name_, param in model.named_parameters():
                if "classifier" in name_ and param.ndim == 2:
                    param.normal_(0, 0.5)
    with quiet_transformers():
        model.save_pretrained(path)
    _write_tokenizer(path, vocab)
    return path
