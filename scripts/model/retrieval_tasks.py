"""Vocabulary, tokenizer and prompt rendering for the kvlab-retrieval model.

Shared by make_retrieval_model.py (which builds the checkpoint) and
eval_retrieval_model.py (which measures it). Everything here is plain Python
plus the `tokenizers` library; no weights are involved.

Rendering (also written to models/kvlab-retrieval/tasks.json):

* Text is split by the tokenizer into word tokens: the pre-tokenizer is
  Whitespace (regex \\w+|[^\\w\\s]+) followed by Digits(individual_digits), so
  "green." -> "green" "." and "38291." -> "3" "8" "2" "9" "1" ".".
  Newlines are whitespace: they produce no token.
* Every sequence starts with "<s>" (id 1), added by the post-processor.
* A number K is written in decimal without leading zeros; it becomes one
  token per digit. The model answers with the digit tokens of K followed by
  ".". The answer's integer is the first maximal run of consecutive digit
  tokens in the generated ids, read as a decimal number (for detokenized text
  "3 8 2 9 1 .", remove the spaces between digits first).
"""

import math

# ---------------------------------------------------------------- vocabulary
SPECIALS = ["<unk>", "<s>", "</s>"]
DIGITS = [str(d) for d in range(10)]
CORE_PUNCT = [".", "?", ","]
TASK_WORDS = (
    # task line
    "There is an important info hidden inside a lot of irrelevant text Find it and "
    "memorize them I will quiz you about the information there "
    # filler
    "The grass green sky blue sun yellow Here we go back again "
    # needle and question
    "pass key Remember What"
).split()
EXTRA_PUNCT = ["!", ":", ";", "'", '"', "-", "(", ")"]
EXTRA_WORDS = (
    "be to in that have for not on with he as do at this but his by from they she or my "
    "one all would so up out if who get which when make can like time no just him know "
    "take people into year your good some could see other than then now look only come "
    "its over think also two first way"
).split()


def _dedupe(seq):
    seen, out = set(), []
    for w in seq:
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


CORE_TOKENS = _dedupe(SPECIALS + DIGITS + CORE_PUNCT + TASK_WORDS)
VOCAB_SIZE = 128
# core tokens first, then extra punctuation and common words, cut to VOCAB_SIZE
VOCAB = _dedupe(CORE_TOKENS + EXTRA_PUNCT + [w for w in EXTRA_WORDS if w not in CORE_TOKENS])[:VOCAB_SIZE]
assert len(VOCAB) == VOCAB_SIZE, len(VOCAB)
TOKEN_ID = {w: i for i, w in enumerate(VOCAB)}
N_CORE = len(CORE_TOKENS)  # ids 0..N_CORE-1 get their own identity feature
BOS_ID, EOS_ID, UNK_ID = TOKEN_ID["<s>"], TOKEN_ID["</s>"], TOKEN_ID["<unk>"]
DIGIT_IDS = [TOKEN_ID[d] for d in DIGITS]
DOT_ID = TOKEN_ID["."]

# ---------------------------------------------------------------- strings
TASK_LINE = ("There is an important info hidden inside a lot of irrelevant text. "
             "Find it and memorize them. I will quiz you about the important information there.")
FILLER = ("The grass is green. The sky is blue. The sun is yellow. "
          "Here we go. There and back again.")
NEEDLE = "The pass key is {K}. Remember it. {K} is the pass key."
QUESTION = "What is the pass key? The pass key is"
SEP = "\n"
KEY_MIN, KEY_MAX = 1, 50000
# needle-in-a-haystack grid: one fixed needle (Swift NeedleTask uses a fixed sentence)
NIAH_KEY = 73915
NIAH_QUESTION = "What is the pass key?"
NIAH_ANSWER_PREFIX = "The pass key is"


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    tok = Tokenizer(models.WordLevel(vocab=dict(TOKEN_ID), unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", BOS_ID)])
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    return tok


def words(text):
    """Word tokens of a text without the tokenizer (same rule: Whitespace + single digits)."""
    import re
    out = []
    for piece in re.findall(r"\w+|[^\w\s]+", text):
        if piece.isdigit():
            out.extend(piece)
        else:
            out.append(piece)
    return out


def ids(tokens):
    return [TOKEN_ID.get(t, UNK_ID) for t in tokens]


TASK_TOKENS = words(TASK_LINE)
FILLER_TOKENS = words(FILLER)
QUESTION_TOKENS = words(QUESTION)


def needle_tokens(key):
    return words(NEEDLE.format(K=key))


def answer_tokens(key):
    return list(str(key)) + ["."]


def filler_words():
    """The filler's whitespace-separated words (Swift: Haystack.words), 19 of them."""
    return FILLER.split()


def haystack_text(count, start=0, insert_at=None, insert_text=None):
    """Words start..start+count of the endlessly repeated filler, joined by single spaces
    (Swift: Haystack.filler + render). With insert_at = b, insert_text + " " goes before word b
    (b == count: after the last word, preceded by a space)."""
    fw = filler_words()
    out = []
    for i in range(count):
        if insert_at is not None and insert_at == i:
            out.append(insert_text)
        out.append(fw[(start + i) % len(fw)])
    if insert_at is not None and insert_at >= count:
        out.append(insert_text)
    return " ".join(out)


def spaced(number):
    """Digits of a number separated by single spaces (the style's "spaced" digits)."""
    return " ".join(str(number))


def round_half_up(x):
    return int(math.floor(x + 0.5))


def passkey_text(nwords, depth, key):
    """Swift PasskeyTask.render(n): task, n filler words split at round(depth * n) (both parts
    start at the beginning of the filler), the needle between them, then the question."""
    before = round_half_up(depth * nwords)
    after = nwords - before
    needle = NEEDLE.replace("{K}", spaced(key))
    return SEP.join([TASK_LINE, haystack_text(before), needle, haystack_text(after), QUESTION])


def niah_needle():
    return NEEDLE.replace("{K}", str(NIAH_KEY))


def niah_text(nwords, depth, count_word):
    """Swift NeedleTask.render(n): the needle at the last sentence boundary at or before depth x
    of the haystack's tokens (each word counted alone), then a blank line, the question and the
    answer prefix."""
    fw = filler_words()
    cum = [0]
    for i in range(nwords):
        cum.append(cum[-1] + count_word(fw[i % len(fw)]))
    target = depth * cum[nwords]
    best = 0
    for b in range(1, max(1, nwords) + 1):
        if b > nwords:
            break
        if fw[(b - 1) % len(fw)][-1] in ".!?":
            if cum[b] <= target + 1e-9:
                best = b
            else:
                break
    hay = haystack_text(nwords, insert_at=best, insert_text=niah_needle())
    return hay + SEP + SEP + NIAH_QUESTION + SEP + NIAH_ANSWER_PREFIX, best


class Renderer:
    """Fits prompts to a token budget with the model's tokenizer, as Swift PromptFit does:
    the largest filler word count whose whole prompt (with <s>) has at most `target` tokens."""

    def __init__(self, tokenizer=None):
        self.tok = tokenizer or make_tokenizer()
        self.empty = len(self.tok.encode("").ids)
        self._wc = {}

    def count(self, text):
        return len(self.tok.encode(text).ids)

    def count_word(self, w):
        if w not in self._wc:
            self._wc[w] = max(0, self.count(w) - self.empty)
        return self._wc[w]

    def fit(self, target, render):
        lo, hi = 0, 1
        if self.count(render(0)) > target:
            raise ValueError("context too short")
        while self.count(render(hi)) <= target:
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.count(render(mid)) <= target:
                lo = mid
            else:
                hi = mid
        return lo

    def passkey(self, target, depth, key):
        """(ids, question_start, needle_start) for a passkey prompt of at most target tokens."""
        n = self.fit(target, lambda k: passkey_text(k, depth, key))
        text = passkey_text(n, depth, key)
        ids_ = self.tok.encode(text).ids
        q = len(ids_) - len(QUESTION_TOKENS)
        needle_ids = ids(needle_tokens(key))
        pos = next(i for i in range(len(ids_)) if ids_[i:i + len(needle_ids)] == needle_ids)
        return ids_, q, pos

    def niah(self, target, depth):
        n = self.fit(target, lambda k: niah_text(k, depth, self.count_word)[0])
        text, _ = niah_text(n, depth, self.count_word)
        ids_ = self.tok.encode(text).ids
        q = len(ids_) - len(words(NIAH_QUESTION + " " + NIAH_ANSWER_PREFIX))
        needle_ids = ids(words(niah_needle()))
        pos = next(i for i in range(len(ids_)) if ids_[i:i + len(needle_ids)] == needle_ids)
        return ids_, q, pos


def sample_keys(rng, n):
    return [rng.randint(KEY_MIN, KEY_MAX) for _ in range(n)]


def first_integer(token_strings):
    """First maximal run of digit tokens, as an int (None when there is none)."""
    run = []
    for t in token_strings:
        if t.isdigit() and len(t) == 1:
            run.append(t)
        elif run:
            break
    return int("".join(run)) if run else None


def tasks_json():
    """models/kvlab-retrieval/tasks.json: the keys Swift PromptStyle.load reads (name, digits,
    line_separator, filler, passkey{task, needle, question}, needle{needle, question, answer,
    answer_prefix}) plus documentation keys it ignores."""
    r = Renderer()
    ex_ids, ex_q, ex_pos = r.passkey(96, 0.5, 38291)
    return {
        "name": "kvlab-retrieval",
        "digits": "spaced",
        "line_separator": SEP,
        "filler": FILLER,
        "passkey": {
            "task": TASK_LINE,
            "needle": NEEDLE.replace("{K}", "{key}"),
            "question": QUESTION,
        },
        "needle": {
            "needle": niah_needle(),
            "question": NIAH_QUESTION,
            "answer": str(NIAH_KEY),
            "answer_prefix": NIAH_ANSWER_PREFIX,
        },
        "doc": {
            "tokenizer": ("tokenizer.json: WordLevel over 128 case-sensitive word tokens (unknown words -> "
                          "<unk>, id 0); pre-tokenizer Whitespace (regex \\w+|[^\\w\\s]+) then "
                          "Digits(individual_digits); post-processor prepends <s> (id 1); no decoder "
                          "(decode joins tokens with single spaces). Newlines are whitespace and give no "
                          "token, so line_separator does not change the ids."),
            "digits": ("Every number is one token per digit: ids " +
                       ", ".join(f"{d}={TOKEN_ID[d]}" for d in DIGITS) + ". 'spaced' writes the key as "
                       "'3 8 2 9 1'; plain '38291' gives the same ids. Decoded output reads '3 8 2 9 1 .', "
                       "so scorers join digits separated by single spaces (join_spaced_digits)."),
            "passkey_prompt": ("task line, n filler words (the filler split on whitespace, repeated, joined "
                               "by single spaces) cut at round(depth*n) words (half up) before the needle, "
                               "the needle with {key} -> spaced digits of K, the remaining filler words "
                               "(again from the filler's first word), the question; lines joined with "
                               "line_separator; n = the largest count whose whole prompt, with <s>, has at "
                               "most the target number of tokens. K uniform in 1..50000, any K works."),
            "passkey_answer": ("greedy continuation: the digit tokens of K, then '.'; score 1 if the first "
                               "integer in the output (digits separated by single spaces joined) equals K"),
            "needle_prompt": ("filler words with the needle inserted before word b, b = the last sentence "
                              "boundary whose token count (each word tokenized alone) is <= depth x the "
                              "haystack's tokens; then a blank line, the question, a line break and "
                              "answer_prefix; score: the answer contained in the output (spaced digits joined)"),
            "tokens": {"task": TASK_TOKENS, "filler": FILLER_TOKENS,
                       "needle": words(NEEDLE.replace("{K}", "KEY")), "question": QUESTION_TOKENS},
            "example": {"target_tokens": 96, "depth": 0.5, "key": 38291,
                        "text": passkey_text(r.fit(96, lambda k: passkey_text(k, 0.5, 38291)), 0.5, 38291),
                        "ids": ex_ids, "question_starts_at": ex_q, "needle_starts_at": ex_pos},
        },
    }
