"""Named entities that identify an event across languages: deposits, companies, ministries.

Pure data and a compiled matcher.  Rule term sets list the spellings of a *kind* of thing
(every tungsten deposit in one set), while clustering needs to know which spellings name the
*same* thing ("Upper Kairakty", "Верхнее Кайракты", "上凯拉克特"), so each entity here is one
real-world object with its names in every language we read.  Names use the rule term syntax
(``Kazakh*``), compiled by ``monitor.rules.terms`` so that matching folds text exactly as rules do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from monitor.rules.terms import parse_term, term_pattern
from monitor.rules.text import fold

#: How much sharing an entity of each kind says about two items reporting the same event.
#: A deposit or a company is specific; a ministry or a region speaks about many events; a
#: country or a commodity is the topic every watched story shares, so it is barely evidence.
KIND_WEIGHT: Mapping[str, float] = MappingProxyType(
    {
        "deposit": 1.5,
        "company": 1.5,
        "project": 1.5,
        "ministry": 1.0,
        "agency": 1.0,
        "place": 1.0,
        "country": 0.25,
        "commodity": 0.25,
    }
)
GENERIC_KINDS = frozenset({"country", "commodity"})
"""Kinds too broad to find candidate stories by (every story about Kazakhstan would be one)."""


@dataclass(frozen=True, slots=True)
class Entity:
    """One real-world object and every spelling of it we expect in the news."""

    id: str
    kind: str
    names: tuple[str, ...]

    @property
    def weight(self) -> float:
        return KIND_WEIGHT.get(self.kind, 1.0)

    @property
    def generic(self) -> bool:
        return self.kind in GENERIC_KINDS


class Lexicon:
    """Entities compiled for matching over folded text; finds the entity ids in a text.

    Each entity's names are one pattern, tried only when one of its names' anchor (the
    longest literal word of the name) occurs in the text: a substring test is a hundred times
    cheaper than a regex with word-boundary look-arounds, and most entities are absent from
    any one item.
    """

    def __init__(self, entities: Iterable[Entity]) -> None:
        self.entities: Mapping[str, Entity] = MappingProxyType({e.id: e for e in entities})
        self._patterns: dict[str, re.Pattern[str]] = {}
        self._anchors: list[tuple[str, str]] = []
        for entity in self.entities.values():
            alternatives: list[str] = []
            for name in sorted(entity.names, key=len, reverse=True):
                words = parse_term(name)
                alternatives.append(term_pattern(words).pattern)
                anchor = max((word.text for word in words), key=len)
                self._anchors.append((anchor, entity.id))
            self._patterns[entity.id] = re.compile("|".join(alternatives))

    def find(self, folded_text: str) -> frozenset[str]:
        """The ids of every entity named in ``folded_text`` (text already folded)."""
        present = {entity for anchor, entity in self._anchors if anchor in folded_text}
        return frozenset(e for e in present if self._patterns[e].search(folded_text))

    def find_in(self, text: str) -> frozenset[str]:
        """``find`` for raw text."""
        return self.find(fold(text).text)

    def weight(self, entity_id: str) -> float:
        entity = self.entities.get(entity_id)
        return entity.weight if entity else 1.0

    def generic(self, entity_id: str) -> bool:
        entity = self.entities.get(entity_id)
        return entity.generic if entity else False


def _e(entity_id: str, kind: str, names: Sequence[str]) -> Entity:
    return Entity(entity_id, kind, tuple(names))


DEFAULT_ENTITIES: tuple[Entity, ...] = (
    # -- deposits and projects ------------------------------------------------------------
    _e(
        "upper-kairakty",
        "deposit",
        [
            "Upper Kairakty",
            "Verkhnee Kairakty",
            "Верхн* Кайракт*",
            "Жоғарғы Қайрақты",
            "上凯拉克特",
        ],
    ),
    _e("boguty", "deposit", ["Boguty", "Bakuta", "Богуты", "Бұғыты", "巴库塔"]),
    _e(
        "severny-katpar",
        "deposit",
        ["Severny Katpar", "North Katpar", "Север* Катпар*", "Солтүстік Қатпар", "北卡特帕尔"],
    ),
    _e(
        "zhana-kazakhstan",
        "deposit",
        ["Zhana Kazakhstan", "Жана Казахстан", "Жаңа Қазақстан", "扎纳哈萨克斯坦"],
    ),
    _e("tulkubas", "deposit", ["Tulkubas", "Тулькубас", "Түлкібас", "图尔库巴斯"]),
    _e("koktenkol", "deposit", ["Koktenkol", "Коктенколь", "Көктеңкөл", "科克坚科尔"]),
    # -- companies ------------------------------------------------------------------------
    _e("jiaxin", "company", ["Jiaxin", "Цзясинь", "嘉鑫"]),
    _e("cove-kaz", "company", ["Cove Kaz", "Cove Capital", "Ков Каз", "科夫"]),
    _e("tau-ken", "company", ["Tau-Ken Samruk", "Тау-Кен Самрук", "Тау Кен Самұрық", "陶肯"]),
    _e("kazatomprom", "company", ["Kazatomprom", "Казатомпром", "Қазатомөнеркәсіп", "哈原工"]),
    _e("erg", "company", ["Eurasian Resources Group", "ERG", "ЕРГ", "欧亚资源集团"]),
    _e("navoi", "company", ["Navoiyuran", "Navoi Mining", "Навоийуран", "Навоий ГМК", "纳沃伊"]),
    _e("almalyk", "company", ["Almalyk", "Алмалык*", "Алмалық", "阿尔马雷克"]),
    _e("lynas", "company", ["Lynas", "Лайнас", "莱纳斯"]),
    _e(
        "china-northern-re",
        "company",
        ["China Northern Rare Earth", "北方稀土", "Северн* редкоземельн*"],
    ),
    _e("shenghe", "company", ["Shenghe", "盛和资源", "Шэнхэ"]),
    # -- ministries and agencies ------------------------------------------------------------
    _e(
        "kz-min-industry",
        "ministry",
        [
            "Ministry of Industry and Construction",
            "Министерств* промышленности и строительства",
            "МПС РК",
            "Өнеркәсіп және құрылыс министрлігі",
            "工业和建设部",
        ],
    ),
    _e(
        "mofcom",
        "ministry",
        [
            "Ministry of Commerce",
            "MOFCOM",
            "Минкоммерции",
            "Министерств* коммерции",
            "Сауда министрлігі",
            "商务部",
        ],
    ),
    _e(
        "china-gac", "agency", ["General Administration of Customs", "海关总署", "Главн* таможенн*"]
    ),
    _e(
        "miit",
        "ministry",
        ["MIIT", "工业和信息化部", "工信部", "Министерств* промышленности и информатизации"],
    ),
    _e(
        "us-dfc",
        "agency",
        [
            "Development Finance Corporation",
            "DFC",
            "Корпораци* по финансированию развития",
            "Корпораци* финансирования развития",
            "Даму қаржы корпорациясы",
            "国际开发金融公司",
        ],
    ),
    _e("us-exim", "agency", ["EXIM", "Export-Import Bank", "Эксимбанк*", "进出口银行"]),
    _e(
        "us-state", "ministry", ["State Department", "Госдеп*", "Мемлекеттік департамент", "国务院"]
    ),
    _e("c5-plus-1", "agency", ["C5+1", "C5 1", "С5+1", "С5 1", "中亚五国+美国"]),
    _e(
        "eu-commission",
        "agency",
        ["European Commission", "Еврокомисси*", "Еуропалық комиссия", "欧盟委员会"],
    ),
    _e(
        "geology-committee",
        "agency",
        ["Committee of Geology", "Комитет* геологии", "Геология комитеті", "地质委员会"],
    ),
    # -- places -------------------------------------------------------------------------------
    _e("karaganda", "place", ["Karaganda", "Qaraghandy", "Караганд*", "Қарағанды", "卡拉干达"]),
    _e(
        "east-kz",
        "place",
        ["East Kazakhstan", "Восточно-Казахстанск*", "Шығыс Қазақстан", "东哈萨克斯坦"],
    ),
    _e("tashkent", "place", ["Tashkent", "Ташкент*", "Ташкент", "塔什干"]),
    _e("astana", "place", ["Astana", "Астан*", "阿斯塔纳"]),
    _e("ganzhou", "place", ["Ganzhou", "Ганьчжоу", "赣州"]),
    _e("baotou", "place", ["Baotou", "Баотоу", "包头"]),
    # -- countries and commodities: the topic, hardly evidence -----------------------------------
    _e(
        "kazakhstan",
        "country",
        ["Kazakh*", "Qazaq*", "казахстан*", "қазақстан*", "哈萨克斯坦", "哈国"],
    ),
    _e(
        "china",
        "country",
        ["China", "Chinese", "Beijing", "Китай", "Китая", "КНР", "Қытай*", "中国", "北京"],
    ),
    _e(
        "usa",
        "country",
        ["United States", "U.S.", "American", "Washington", "США", "АҚШ", "美国", "华盛顿"],
    ),
    _e("uzbekistan", "country", ["Uzbek*", "Узбек*", "Өзбек*", "乌兹别克斯坦"]),
    _e("tungsten", "commodity", ["tungsten", "wolfram*", "вольфрам*", "钨"]),
    _e(
        "rare-earths",
        "commodity",
        ["rare earth*", "rare-earth*", "редкоземельн*", "сирек жер*", "稀土"],
    ),
    _e("gallium", "commodity", ["gallium", "галли*", "镓"]),
)
