"""A template grammar of English sentences with Italian translations that really reorder.

Italian differs from English here in ways a speech translation model must learn:
adjectives follow the noun and agree in gender and number ("the black cats" -> "i gatti neri"),
object pronouns go before the verb ("sees it" -> "lo vede"), possessors follow the possessed
("the teacher's dog" -> "il cane del maestro"), articles merge with prepositions ("in the garden" ->
"nel giardino"), and "does not see" becomes "non vede".

Every sentence comes with a word alignment (pairs of English and Italian word indices), so analyses
can relate translated tokens to source words and, through the word timings, to source audio.
Transcripts are lower case without punctuation, words separated by single spaces.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np


@dataclass
class Phrase:
    """Aligned English and Italian word sequences; ``links`` holds (english index, italian index)."""

    en: List[str] = field(default_factory=list)
    it: List[str] = field(default_factory=list)
    links: List[Tuple[int, int]] = field(default_factory=list)

    @staticmethod
    def word(en: str, it: str) -> "Phrase":
        """A one-to-one aligned pair; multi-word sides are linked all-to-all."""
        e, i = en.split(), it.split()
        return Phrase(e, i, [(a, b) for a in range(len(e)) for b in range(len(i))])

    def __add__(self, other: "Phrase") -> "Phrase":
        ne, ni = len(self.en), len(self.it)
        return Phrase(self.en + other.en, self.it + other.it,
                      self.links + [(a + ne, b + ni) for a, b in other.links])

    @staticmethod
    def join(parts: Sequence["Phrase"]) -> "Phrase":
        out = Phrase()
        for p in parts:
            out = out + p
        return out

    @staticmethod
    def reordered(en_parts: Sequence["Phrase"], it_order: Sequence[int]) -> "Phrase":
        """Concatenate ``en_parts`` in English order, their Italian sides in ``it_order``."""
        en, links, en_offsets = [], [], []
        for p in en_parts:
            en_offsets.append(len(en))
            en += p.en
        it, it_offsets = [], {}
        for k in it_order:
            it_offsets[k] = len(it)
            it += en_parts[k].it
        for k, p in enumerate(en_parts):
            links += [(a + en_offsets[k], b + it_offsets[k]) for a, b in p.links]
        return Phrase(en, it, links)


@dataclass(frozen=True)
class Noun:
    en: str
    en_pl: str
    it: str
    it_pl: str
    feminine: bool
    animate: bool = False

    def needs_lo(self) -> bool:
        """Italian masculine nouns starting with s+consonant, z, gn, ps take lo/gli/uno."""
        w = self.it
        return (w[0] == "s" and len(w) > 1 and w[1] not in "aeiou") or w[0] in "zxy" or w[:2] in ("gn", "ps")


@dataclass(frozen=True)
class Adjective:
    en: str
    it: str  # masculine singular

    def agree(self, feminine: bool, plural: bool) -> str:
        w = self.it
        if w[-1] == "o":
            stem = w[:-1]
            if not plural:
                return stem + ("a" if feminine else "o")
            if stem.endswith(("c", "g")):  # bianco -> bianchi/bianche, lungo -> lunghi/lunghe
                return stem + ("he" if feminine else "hi")
            if stem.endswith("i"):  # vecchio -> vecchi/vecchie, grigio -> grigi/grigie
                return stem + ("e" if feminine else "")
            return stem + ("e" if feminine else "i")
        if w[-1] == "e":
            return w[:-1] + "i" if plural else w
        return w  # invariable: blu


@dataclass(frozen=True)
class Verb:
    en: str  # base form
    en_3sg: str
    it_3sg: str
    it_3pl: str


def _n(en, it, feminine, en_pl=None, it_pl=None, animate=False):
    if en_pl is None:
        en_pl = en + ("es" if en.endswith(("s", "x", "sh", "ch")) else "s")
    if it_pl is None:
        last = it[-1]
        it_pl = it[:-1] + {"o": "i", "a": "e", "e": "i"}.get(last, last)
    return Noun(en, en_pl, it, it_pl, feminine, animate)


NOUNS: Tuple[Noun, ...] = (
    _n("cat", "gatto", False, animate=True), _n("dog", "cane", False, animate=True),
    _n("horse", "cavallo", False, animate=True), _n("rabbit", "coniglio", False, it_pl="conigli", animate=True),
    _n("mouse", "topo", False, en_pl="mice", animate=True), _n("wolf", "lupo", False, en_pl="wolves", animate=True),
    _n("cow", "mucca", True, it_pl="mucche", animate=True), _n("sheep", "pecora", True, en_pl="sheep", animate=True),
    _n("fish", "pesce", False, en_pl="fish", animate=True), _n("boy", "ragazzo", False, animate=True),
    _n("girl", "ragazza", True, animate=True), _n("child", "bambino", False, en_pl="children", animate=True),
    _n("woman", "donna", True, en_pl="women", animate=True), _n("teacher", "maestro", False, animate=True),
    _n("doctor", "dottore", False, animate=True), _n("farmer", "contadino", False, animate=True),
    _n("student", "studente", False, animate=True), _n("singer", "cantante", False, animate=True),
    _n("cook", "cuoco", False, it_pl="cuochi", animate=True), _n("painter", "pittore", False, animate=True),
    _n("queen", "regina", True, animate=True), _n("neighbour", "vicino", False, animate=True),
    _n("house", "casa", True), _n("table", "tavolo", False), _n("chair", "sedia", True),
    _n("book", "libro", False), _n("car", "macchina", True), _n("apple", "mela", True),
    _n("window", "finestra", True), _n("box", "scatola", True), _n("bag", "borsa", True),
    _n("cup", "tazza", True), _n("bottle", "bottiglia", True), _n("hat", "cappello", False),
    _n("shoe", "scarpa", True), _n("key", "chiave", True), _n("letter", "lettera", True),
    _n("picture", "quadro", False), _n("flower", "fiore", False), _n("garden", "giardino", False),
    _n("river", "fiume", False), _n("lake", "lago", False, it_pl="laghi"), _n("mountain", "montagna", True),
    _n("street", "strada", True), _n("shop", "negozio", False, it_pl="negozi"), _n("kitchen", "cucina", True),
    _n("bed", "letto", False), _n("wall", "muro", False), _n("boat", "barca", True, it_pl="barche"),
    _n("train", "treno", False), _n("bicycle", "bicicletta", True), _n("mirror", "specchio", False, it_pl="specchi"),
    _n("backpack", "zaino", False), _n("cake", "torta", True), _n("lamp", "lampada", True),
    _n("pen", "penna", True), _n("phone", "telefono", False), _n("ball", "palla", True),
    _n("knife", "coltello", False, en_pl="knives"), _n("glass", "bicchiere", False),
    _n("spoon", "cucchiaio", False, it_pl="cucchiai"), _n("plate", "piatto", False),
    _n("bridge", "ponte", False), _n("village", "paese", False), _n("basket", "cestino", False),
)

ADJECTIVES: Tuple[Adjective, ...] = tuple(Adjective(e, i) for e, i in (
    ("black", "nero"), ("white", "bianco"), ("red", "rosso"), ("green", "verde"), ("yellow", "giallo"),
    ("blue", "blu"), ("grey", "grigio"), ("brown", "marrone"), ("small", "piccolo"), ("big", "grande"),
    ("old", "vecchio"), ("new", "nuovo"), ("young", "giovane"), ("tall", "alto"), ("short", "basso"),
    ("long", "lungo"), ("heavy", "pesante"), ("light", "leggero"), ("clean", "pulito"), ("dirty", "sporco"),
    ("happy", "felice"), ("sad", "triste"), ("tired", "stanco"), ("quiet", "tranquillo"), ("noisy", "rumoroso"),
    ("beautiful", "bello"), ("ugly", "brutto"), ("strong", "forte"), ("weak", "debole"), ("rich", "ricco"),
    ("poor", "povero"), ("cold", "freddo"), ("warm", "caldo"), ("dark", "scuro"), ("round", "rotondo"),
    ("empty", "vuoto"), ("full", "pieno"), ("famous", "famoso"), ("strange", "strano"), ("expensive", "costoso"),
    ("soft", "morbido"), ("hard", "duro"), ("wet", "bagnato"), ("dry", "asciutto"), ("broken", "rotto"),
))

VERBS: Tuple[Verb, ...] = tuple(Verb(*v) for v in (
    ("see", "sees", "vede", "vedono"), ("want", "wants", "vuole", "vogliono"), ("find", "finds", "trova", "trovano"),
    ("take", "takes", "prende", "prendono"), ("buy", "buys", "compra", "comprano"), ("sell", "sells", "vende", "vendono"),
    ("paint", "paints", "dipinge", "dipingono"), ("open", "opens", "apre", "aprono"),
    ("close", "closes", "chiude", "chiudono"), ("carry", "carries", "porta", "portano"),
    ("watch", "watches", "guarda", "guardano"), ("draw", "draws", "disegna", "disegnano"),
    ("move", "moves", "sposta", "spostano"), ("build", "builds", "costruisce", "costruiscono"),
    ("break", "breaks", "rompe", "rompono"), ("fix", "fixes", "ripara", "riparano"), ("wash", "washes", "lava", "lavano"),
    ("hide", "hides", "nasconde", "nascondono"), ("hold", "holds", "tiene", "tengono"), ("push", "pushes", "spinge", "spingono"),
    ("pull", "pulls", "tira", "tirano"), ("love", "loves", "ama", "amano"), ("call", "calls", "chiama", "chiamano"),
    ("follow", "follows", "segue", "seguono"), ("touch", "touches", "tocca", "toccano"),
    ("remember", "remembers", "ricorda", "ricordano"), ("describe", "describes", "descrive", "descrivono"),
    ("choose", "chooses", "sceglie", "scelgono"), ("lose", "loses", "perde", "perdono"),
    ("meet", "meets", "incontra", "incontrano"), ("help", "helps", "aiuta", "aiutano"),
))

NUMBERS = (("two", "due"), ("three", "tre"), ("four", "quattro"), ("five", "cinque"))
TIME_ADVERBS = (("today", "oggi"), ("now", "ora"), ("often", "spesso"), ("sometimes", "talvolta"),
                ("usually", "solitamente"), ("every morning", "ogni mattina"), ("every evening", "ogni sera"),
                ("every day", "ogni giorno"), ("tonight", "stasera"))
MANNER_ADVERBS = (("quickly", "velocemente"), ("slowly", "lentamente"), ("carefully", "attentamente"),
                  ("quietly", "silenziosamente"), ("happily", "felicemente"), ("again", "ancora"))
# English preposition -> (Italian word before the article or None, Italian preposition merging with
# the article or None)
PREPOSITIONS = {"in": (None, "in"), "on": (None, "su"), "near": ("vicino", "a"), "under": ("sotto", None),
                "behind": ("dietro", None), "with": ("con", None), "from": (None, "da")}
_MERGED = {"in": "ne", "su": "su", "a": "a", "di": "de", "da": "da"}


def definite_article(noun: Noun, plural: bool) -> str:
    if noun.feminine:
        return "le" if plural else "la"
    if noun.needs_lo():
        return "gli" if plural else "lo"
    return "i" if plural else "il"


def articulated(prep: str, article: str) -> str:
    """in + il -> nel, di + la -> della, a + gli -> agli ..."""
    stem = _MERGED[prep]
    if article == "il":
        return stem + "l"
    if article in ("i", "gli"):
        return stem + article
    return stem + "l" + article  # lo -> llo, la -> lla, le -> lle, gli -> lgli


def _an(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


class SentenceGrammar:
    """Draws aligned (English, Italian) sentences from the template grammar with a numpy Generator."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def _pick(self, items):
        return items[int(self.rng.integers(len(items)))]

    def _chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def noun_phrase(self, animate: Optional[bool] = None, definite_only: bool = False,
                    allow_possessive: bool = True) -> Tuple[Phrase, Noun, bool]:
        """DET [ADJ] NOUN, or the POSSESSOR's [ADJ] NOUN; returns the phrase, its head and number."""
        pool = [n for n in NOUNS if animate is None or n.animate == animate]
        noun = self._pick(pool)
        plural = self._chance(0.35)
        adj = self._pick(ADJECTIVES) if self._chance(0.55) else None
        en_noun = noun.en_pl if plural else noun.en
        it_noun = noun.it_pl if plural else noun.it
        head = Phrase.word(en_noun, it_noun)
        adj_p = Phrase.word(adj.en, adj.agree(noun.feminine, plural)) if adj else Phrase()
        if allow_possessive and self._chance(0.12):
            # the teacher's red car -> la macchina rossa del maestro
            owner = self._pick([n for n in NOUNS if n.animate])
            art = definite_article(noun, plural)
            det = Phrase(["the"], [art], [(0, 0)])
            owner_p = Phrase([owner.en + "'s"], [articulated("di", definite_article(owner, False)), owner.it],
                             [(0, 0), (0, 1)])
            # English: the owner's [adj] noun ; Italian: art noun [adj] di+art owner
            return Phrase.reordered([det, owner_p, adj_p, head], [0, 3, 2, 1]), noun, plural
        first_word = (adj.en if adj else en_noun)
        if definite_only or self._chance(0.5):
            det = Phrase(["the"], [definite_article(noun, plural)], [(0, 0)])
        elif plural:
            if self._chance(0.5):
                en_num, it_num = self._pick(NUMBERS)
                det = Phrase.word(en_num, it_num)
            else:
                det = Phrase.word("some", "alcune" if noun.feminine else "alcuni")
        else:
            it_det = "una" if noun.feminine else ("uno" if noun.needs_lo() else "un")
            det = Phrase.word(_an(first_word), it_det)
        # English: det [adj] noun ; Italian: det noun [adj]
        return Phrase.reordered([det, adj_p, head], [0, 2, 1]), noun, plural

    def place(self) -> Phrase:
        """in the garden -> nel giardino; near the big river -> vicino al fiume grande."""
        en_prep = self._pick(list(PREPOSITIONS))
        before, merging = PREPOSITIONS[en_prep]
        np_, noun, plural = self.noun_phrase(animate=False, definite_only=True, allow_possessive=False)
        # np_.it[0] is the article; merge it with the preposition when Italian does
        art = np_.it[0]
        it_words = ([before] if before else []) + [articulated(merging, art) if merging else art] + np_.it[1:]
        shift = len(it_words) - len(np_.it)
        links = [(0, 0)] + [(a + 1, b + shift) for a, b in np_.links]
        if before:  # the preposition also governs the merged/plain article word
            links.append((0, 1))
        return Phrase([en_prep] + np_.en, it_words, links)

    def sentence(self) -> Phrase:
        parts: List[Phrase] = []
        if self._chance(0.25):
            parts.append(Phrase.word(*self._pick(TIME_ADVERBS)))
        subj, s_noun, s_plural = self.noun_phrase(animate=True)
        parts.append(subj)
        kind = self.rng.random()
        if kind < 0.15:  # copula: the cats are black -> i gatti sono neri
            adj = self._pick(ADJECTIVES)
            parts.append(Phrase.word("are" if s_plural else "is", "sono" if s_plural else "è"))
            parts.append(Phrase.word(adj.en, adj.agree(s_noun.feminine, s_plural)))
            if self._chance(0.3):
                parts.append(self.place())
            return Phrase.join(parts)
        verb = self._pick(VERBS)
        it_verb = verb.it_3pl if s_plural else verb.it_3sg
        if kind < 0.32:  # object pronoun before the verb: sees it -> lo vede
            pron_en, pron_it = ("them", "li") if self._chance(0.4) else ("it", "lo")
            v = Phrase.word(verb.en if s_plural else verb.en_3sg, it_verb)
            parts.append(Phrase.reordered([v, Phrase.word(pron_en, pron_it)], [1, 0]))
        else:
            if kind < 0.5:  # does not see -> non vede
                aux = "do" if s_plural else "does"
                parts.append(Phrase([aux, "not", verb.en], ["non", it_verb], [(0, 1), (1, 0), (2, 1)]))
            else:
                parts.append(Phrase.word(verb.en if s_plural else verb.en_3sg, it_verb))
            obj, _, _ = self.noun_phrase()
            parts.append(obj)
        if self._chance(0.35):
            parts.append(self.place())
        if self._chance(0.15):
            parts.append(Phrase.word(*self._pick(MANNER_ADVERBS)))
        return Phrase.join(parts)


def vocabulary() -> Tuple[set, set]:
    """Every English and Italian word the grammar can produce (for documentation and tests)."""
    en, it = set(), set()
    for n in NOUNS:
        en |= {n.en, n.en_pl, n.en + "'s"}
        it |= {n.it, n.it_pl}
        for plural in (False, True):
            art = definite_article(n, plural)
            it |= {art} | {articulated(p, art) for p in ("in", "su", "a", "di", "da")}
    for a in ADJECTIVES:
        en.add(a.en)
        it |= {a.agree(f, p) for f in (False, True) for p in (False, True)}
    for v in VERBS:
        en |= {v.en, v.en_3sg}
        it |= {v.it_3sg, v.it_3pl}
    for pairs in (NUMBERS, TIME_ADVERBS, MANNER_ADVERBS):
        for e, i in pairs:
            en |= set(e.split())
            it |= set(i.split())
    en |= {"the", "a", "an", "some", "is", "are", "do", "does", "not", "it", "them"} | set(PREPOSITIONS)
    it |= {"un", "uno", "una", "alcuni", "alcune", "è", "sono", "non", "lo", "li", "vicino", "sotto", "dietro", "con"}
    return en, it
