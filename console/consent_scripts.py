# Tifinagh letters and the Latin transliteration of Tamazight are meant here.
# ruff: noqa: RUF001, RUF003
"""The consent explanation an intake officer reads aloud to the survivor
before anything about her is shared, in the language she speaks: Darija (in
Arabic script), Tamazight (in Tifinagh), Arabic or French.

These texts are in the survivor's language, not the console's: they are
data, not gettext messages, and the page shows each inside an element with
its own `lang` and `dir`. Each says what Masar shares with each sector (the
journey contract's `ShelterNeeds`, `LegalNeeds` and `EmploymentNeeds`, with
the case number, region and risk level: never her name, contact or story),
that she may refuse or withdraw a consent at any time without losing any
help (a withdrawal cancels that sector's referral and asks it to erase what
it received), that a transfer to another organisation needs her consent
first, and that she is counted in de-identified statistics only if she
agrees.

A script marked `draft` has not yet been checked by a native speaker: the
page tells the officer so, and she explains in her own words where the
survivor does not follow. Every script here should be read by a native
speaker working with survivors before the console is used with them; the
Tamazight one carries its Latin transliteration in comments for that
review. Changing what Masar shares means changing these texts too."""

from __future__ import annotations

from dataclasses import dataclass

# The consent scopes, in the order the scripts explain them (the slugs the
# intake pages use for masar.v1.ConsentScope).
SCOPE_SLUGS: tuple[str, ...] = ("shelter", "legal", "employment", "reporting")


@dataclass(frozen=True)
class ConsentScript:
    """One language's explanation, in reading order."""

    code: str  # the `lang` attribute (ISO 639): "ary", "zgh", "ar", "fr"
    name: str  # the language's own name, in its own script
    direction: str  # "rtl" or "ltr"
    title: str
    opening: tuple[str, ...]
    # (consent scope slug, what that consent lets Masar share, and with whom)
    scopes: tuple[tuple[str, str], ...]
    rights: tuple[str, ...]
    question: str
    draft: bool = False


DARIJA = ConsentScript(
    code="ary",
    name="الدارجة",
    direction="rtl",
    title="الموافقة ديالك، قبل ما نعطيو حتى شي معلومة",
    opening=(
        (
            "قبل ما نكملو، غادي نشرح ليك شنو كيدير «مسار» بالمعلومات ديالك. القرار "
            "ديالك نتي. تقدري توقفيني وتسوليني فأي وقت."
        ),
        (
            "سميتك، النمرة ديال التيليفون ديالك، العنوان ديالك وداكشي اللي حكيتي ليا،"
            " عمرهم ما كيتصيفطو للخدمات اللي كنوجهوك ليها. ما كيشوفهم غير الناس اللي "
            "كيتابعو الملف ديالك، وكل مرة شي حد كيشوفهم كتتسجل."
        ),
    ),
    scopes=(
        (
            "shelter",
            (
                "الإيواء: إلا وافقتي، كنقلبو ليك على بلاصة فشي مركز ديال الإيواء فالجهة "
                "ديالك. المركز ما كيوصلو غير رقم الملف، الجهة ديالك، درجة الخطر اللي "
                "قدرناها، شحال ديال الدراري اللي جايين معاك، وشنو محتاجة باش تتحركي "
                "بسهولة."
            ),
        ),
        (
            "legal",
            (
                "المساعدة القانونية: إلا وافقتي، كنطلبو ليك المساعدة ديال شي محامي ولا شي"
                " جمعية ديال المساعدة القانونية. ما كيوصلهم غير رقم الملف، الجهة ديالك، "
                "درجة الخطر، نوع المساعدة القانونية اللي محتاجاها، واللغات اللي كتهضري "
                "بيهم."
            ),
        ),
        (
            "employment",
            (
                "التكوين والخدمة: إلا وافقتي، كنقلبو ليك على بلاصة فشي تكوين. مركز "
                "التكوين ما كيوصلو غير رقم الملف، الجهة ديالك، درجة الخطر، التكوينات اللي"
                " كيهموك، واللغات اللي كتهضري بيهم."
            ),
        ),
        (
            "reporting",
            (
                "الإحصائيات: إلا وافقتي، الحالة ديالك كتتحسب فالأرقام اللي كتعاونا نحسنو "
                "المساعدة ديال العيالات، بلا سميتك وبلا حتى شي حاجة يتعرف بيها عليك. إلا "
                "ما وافقتيش، ما كتتحسبش فالإحصائيات."
            ),
        ),
    ),
    rights=(
        ("تقدري توافقي على شي خدمات وترفضي شي خرين، ولا ترفضيهم كاملين: غادي نبقاو نعاونوك."),
        (
            "تقدري ترجعي فالموافقة ديالك فأي وقت، حتى من بعد: غير قوليها لينا. ديك "
            "الساعة كنوقفو الطلب عند داك الخدمة وكنطلبو منها تمسح داكشي اللي وصلها. "
            "إلا رجعتي فالموافقة، ما كتخسري حتى شي مساعدة من عندنا."
        ),
        "إلا شي نهار الملف ديالك خاصو يتنقل لشي مؤسسة أخرى، غادي نسولوك قبل.",
    ),
    question="على أشمن خدمات نتي موافقة؟",
)

TAMAZIGHT = ConsentScript(
    code="zgh",
    name="ⵜⴰⵎⴰⵣⵉⵖⵜ",
    direction="ltr",
    # Awal nnm d amzwaru
    title="ⴰⵡⴰⵍ ⵏⵏⵎ ⴷ ⴰⵎⵣⵡⴰⵔⵓ",
    opening=(
        # Ad am ssfhmɣ ma iskar Masar s tilɣutin nnm. Kmmi ayd iṭṭafn awal. Tzḍart ad iyi tḥbst,
        # ad iyi tsqsat ɣ kraygat tizi.
        (
            "ⴰⴷ ⴰⵎ ⵙⵙⴼⵀⵎⵖ ⵎⴰ ⵉⵙⴽⴰⵔ ⵎⴰⵙⴰⵔ ⵙ ⵜⵉⵍⵖⵓⵜⵉⵏ ⵏⵏⵎ. ⴽⵎⵎⵉ ⴰⵢⴷ ⵉⵟⵟⴰⴼⵏ ⴰⵡⴰⵍ. ⵜⵣⴹⴰⵔⵜ"
            " ⴰⴷ ⵉⵢⵉ ⵜⵃⴱⵙⵜ, ⴰⴷ ⵉⵢⵉ ⵜⵙⵇⵙⴰⵜ ⵖ ⴽⵔⴰⵢⴳⴰⵜ ⵜⵉⵣⵉ."
        ),
        # Ism nnm, uṭṭun n usawal nnm, tansa nnm d aylli yi tnnit, ur tn nttazn abadan i tmsmunin
        # lli ɣr km nttazn. Ur tn ittannay abla willi itbaɛn ddusi nnm, ar ttyaran kullu willi tn
        # iẓran.
        (
            "ⵉⵙⵎ ⵏⵏⵎ, ⵓⵟⵟⵓⵏ ⵏ ⵓⵙⴰⵡⴰⵍ ⵏⵏⵎ, ⵜⴰⵏⵙⴰ ⵏⵏⵎ ⴷ ⴰⵢⵍⵍⵉ ⵢⵉ ⵜⵏⵏⵉⵜ, ⵓⵔ ⵜⵏ ⵏⵜⵜⴰⵣⵏ "
            "ⴰⴱⴰⴷⴰⵏ ⵉ ⵜⵎⵙⵎⵓⵏⵉⵏ ⵍⵍⵉ ⵖⵔ ⴽⵎ ⵏⵜⵜⴰⵣⵏ. ⵓⵔ ⵜⵏ ⵉⵜⵜⴰⵏⵏⴰⵢ ⴰⴱⵍⴰ ⵡⵉⵍⵍⵉ ⵉⵜⴱⴰⵄⵏ "
            "ⴷⴷⵓⵙⵉ ⵏⵏⵎ, ⴰⵔ ⵜⵜⵢⴰⵔⴰⵏ ⴽⵓⵍⵍⵓ ⵡⵉⵍⵍⵉ ⵜⵏ ⵉⵥⵔⴰⵏ."
        ),
    ),
    scopes=(
        # Asnsi: ig tqblt, ad am nsiggl adɣar ɣ yan uxxam n usnsi ɣ tmnaḍt nnm. Ur as nttazn abla
        # uṭṭun n ddusi, tamnaḍt nnm, aswir n lxaṭar, mnck n warraw lli dim illan, d ma tḥtajt ad
        # tmussut s fssus.
        (
            "shelter",
            (
                "ⴰⵙⵏⵙⵉ: ⵉⴳ ⵜⵇⴱⵍⵜ, ⴰⴷ ⴰⵎ ⵏⵙⵉⴳⴳⵍ ⴰⴷⵖⴰⵔ ⵖ ⵢⴰⵏ ⵓⵅⵅⴰⵎ ⵏ ⵓⵙⵏⵙⵉ ⵖ ⵜⵎⵏⴰⴹⵜ ⵏⵏⵎ. ⵓⵔ"
                " ⴰⵙ ⵏⵜⵜⴰⵣⵏ ⴰⴱⵍⴰ ⵓⵟⵟⵓⵏ ⵏ ⴷⴷⵓⵙⵉ, ⵜⴰⵎⵏⴰⴹⵜ ⵏⵏⵎ, ⴰⵙⵡⵉⵔ ⵏ ⵍⵅⴰⵟⴰⵔ, ⵎⵏⵛⴽ ⵏ "
                "ⵡⴰⵔⵔⴰⵡ ⵍⵍⵉ ⴷⵉⵎ ⵉⵍⵍⴰⵏ, ⴷ ⵎⴰ ⵜⵃⵜⴰⵊⵜ ⴰⴷ ⵜⵎⵓⵙⵙⵓⵜ ⵙ ⴼⵙⵙⵓⵙ."
            ),
        ),
        # Tiwisi n uzrf: ig tqblt, ad am nsiggl tiwisi n yan lmuḥami niɣ yat tmsmunt n uzrf. Ur
        # asn nttazn abla uṭṭun n ddusi, tamnaḍt nnm, aswir n lxaṭar, tiwisi n uzrf lli tḥtajt, d
        # tutlayin lli tsawalt.
        (
            "legal",
            (
                "ⵜⵉⵡⵉⵙⵉ ⵏ ⵓⵣⵔⴼ: ⵉⴳ ⵜⵇⴱⵍⵜ, ⴰⴷ ⴰⵎ ⵏⵙⵉⴳⴳⵍ ⵜⵉⵡⵉⵙⵉ ⵏ ⵢⴰⵏ ⵍⵎⵓⵃⴰⵎⵉ ⵏⵉⵖ ⵢⴰⵜ "
                "ⵜⵎⵙⵎⵓⵏⵜ ⵏ ⵓⵣⵔⴼ. ⵓⵔ ⴰⵙⵏ ⵏⵜⵜⴰⵣⵏ ⴰⴱⵍⴰ ⵓⵟⵟⵓⵏ ⵏ ⴷⴷⵓⵙⵉ, ⵜⴰⵎⵏⴰⴹⵜ ⵏⵏⵎ, ⴰⵙⵡⵉⵔ ⵏ "
                "ⵍⵅⴰⵟⴰⵔ, ⵜⵉⵡⵉⵙⵉ ⵏ ⵓⵣⵔⴼ ⵍⵍⵉ ⵜⵃⵜⴰⵊⵜ, ⴷ ⵜⵓⵜⵍⴰⵢⵉⵏ ⵍⵍⵉ ⵜⵙⴰⵡⴰⵍⵜ."
            ),
        ),
        # Asmuttg d twuri: ig tqblt, ad am nsiggl adɣar ɣ yan usmuttg. Ur as nttazn abla uṭṭun n
        # ddusi, tamnaḍt nnm, aswir n lxaṭar, ismuttgn lli trit, d tutlayin lli tsawalt.
        (
            "employment",
            (
                "ⴰⵙⵎⵓⵜⵜⴳ ⴷ ⵜⵡⵓⵔⵉ: ⵉⴳ ⵜⵇⴱⵍⵜ, ⴰⴷ ⴰⵎ ⵏⵙⵉⴳⴳⵍ ⴰⴷⵖⴰⵔ ⵖ ⵢⴰⵏ ⵓⵙⵎⵓⵜⵜⴳ. ⵓⵔ ⴰⵙ "
                "ⵏⵜⵜⴰⵣⵏ ⴰⴱⵍⴰ ⵓⵟⵟⵓⵏ ⵏ ⴷⴷⵓⵙⵉ, ⵜⴰⵎⵏⴰⴹⵜ ⵏⵏⵎ, ⴰⵙⵡⵉⵔ ⵏ ⵍⵅⴰⵟⴰⵔ, ⵉⵙⵎⵓⵜⵜⴳⵏ ⵍⵍⵉ "
                "ⵜⵔⵉⵜ, ⴷ ⵜⵓⵜⵍⴰⵢⵉⵏ ⵍⵍⵉ ⵜⵙⴰⵡⴰⵍⵜ."
            ),
        ),
        # Imḍann: ig tqblt, ad nḥsb ddusi nnm ɣ imḍann lli aɣ ittɛawann ad nsmɣur tiwisi n
        # tiwtmin, bla ism nnm d bla kra s ra km issn yan. Ig ur tqblt, ur t nḥssb ɣ imḍann.
        (
            "reporting",
            (
                "ⵉⵎⴹⴰⵏⵏ: ⵉⴳ ⵜⵇⴱⵍⵜ, ⴰⴷ ⵏⵃⵙⴱ ⴷⴷⵓⵙⵉ ⵏⵏⵎ ⵖ ⵉⵎⴹⴰⵏⵏ ⵍⵍⵉ ⴰⵖ ⵉⵜⵜⵄⴰⵡⴰⵏⵏ ⴰⴷ ⵏⵙⵎⵖⵓⵔ "
                "ⵜⵉⵡⵉⵙⵉ ⵏ ⵜⵉⵡⵜⵎⵉⵏ, ⴱⵍⴰ ⵉⵙⵎ ⵏⵏⵎ ⴷ ⴱⵍⴰ ⴽⵔⴰ ⵙ ⵔⴰ ⴽⵎ ⵉⵙⵙⵏ ⵢⴰⵏ. ⵉⴳ ⵓⵔ ⵜⵇⴱⵍⵜ, "
                "ⵓⵔ ⵜ ⵏⵃⵙⵙⴱ ⵖ ⵉⵎⴹⴰⵏⵏ."
            ),
        ),
    ),
    rights=(
        # Tzḍart ad tqblt kra n tiwisiwin, tugit kra yaḍn, niɣ ad tugit kullu: ur nttḥbas ad am
        # nttɛawan.
        (
            "ⵜⵣⴹⴰⵔⵜ ⴰⴷ ⵜⵇⴱⵍⵜ ⴽⵔⴰ ⵏ ⵜⵉⵡⵉⵙⵉⵡⵉⵏ, ⵜⵓⴳⵉⵜ ⴽⵔⴰ ⵢⴰⴹⵏ, ⵏⵉⵖ ⴰⴷ ⵜⵓⴳⵉⵜ ⴽⵓⵍⵍⵓ: ⵓⵔ "
            "ⵏⵜⵜⵃⴱⴰⵙ ⴰⴷ ⴰⵎ ⵏⵜⵜⵄⴰⵡⴰⵏ."
        ),
        # Tzḍart ad tbddlt awal nnm ɣ kraygat tizi, ula dffir: ɣas ini yaɣ t. Ɣilad, ad nḥbs
        # asiggl ɣ tmsmunt ann, ad as nini ad tsfḍ aylli as d yiwḍn. Abddl n wawal nnm ur am
        # ittkkis yat tiwisi zɣ ɣur nɣ.
        (
            "ⵜⵣⴹⴰⵔⵜ ⴰⴷ ⵜⴱⴷⴷⵍⵜ ⴰⵡⴰⵍ ⵏⵏⵎ ⵖ ⴽⵔⴰⵢⴳⴰⵜ ⵜⵉⵣⵉ, ⵓⵍⴰ ⴷⴼⴼⵉⵔ: ⵖⴰⵙ ⵉⵏⵉ ⵢⴰⵖ ⵜ. "
            "ⵖⵉⵍⴰⴷ, ⴰⴷ ⵏⵃⴱⵙ ⴰⵙⵉⴳⴳⵍ ⵖ ⵜⵎⵙⵎⵓⵏⵜ ⴰⵏⵏ, ⴰⴷ ⴰⵙ ⵏⵉⵏⵉ ⴰⴷ ⵜⵙⴼⴹ ⴰⵢⵍⵍⵉ ⴰⵙ ⴷ "
            "ⵢⵉⵡⴹⵏ. ⴰⴱⴷⴷⵍ ⵏ ⵡⴰⵡⴰⵍ ⵏⵏⵎ ⵓⵔ ⴰⵎ ⵉⵜⵜⴽⴽⵉⵙ ⵢⴰⵜ ⵜⵉⵡⵉⵙⵉ ⵣⵖ ⵖⵓⵔ ⵏⵖ."
        ),
        # Ig ixṣṣa ddusi nnm ad immutti s yat tmsmunt yaḍn, ad km nsqsa zwar.
        "ⵉⴳ ⵉⵅⵚⵚⴰ ⴷⴷⵓⵙⵉ ⵏⵏⵎ ⴰⴷ ⵉⵎⵎⵓⵜⵜⵉ ⵙ ⵢⴰⵜ ⵜⵎⵙⵎⵓⵏⵜ ⵢⴰⴹⵏ, ⴰⴷ ⴽⵎ ⵏⵙⵇⵙⴰ ⵣⵡⴰⵔ.",
    ),
    # Man tiwisiwin ad tqblt?
    question="ⵎⴰⵏ ⵜⵉⵡⵉⵙⵉⵡⵉⵏ ⴰⴷ ⵜⵇⴱⵍⵜ?",
    draft=True,
)

ARABIC = ConsentScript(
    code="ar",
    name="العربية",
    direction="rtl",
    title="موافقتكِ، قبل أن نشارك أي شيء",
    opening=(
        (
            "قبل أن نتابع، سأشرح لكِ ما تفعله «مسار» بمعلوماتكِ. القرار قراركِ. "
            "يمكنكِ أن توقفيني وأن تسأليني في أي وقت."
        ),
        (
            "اسمكِ ورقم هاتفكِ وعنوانكِ وما حكيتِه لي لا تُرسَل أبدًا إلى الخدمات "
            "التي نوجّهكِ إليها. لا يطّلع عليها إلا من يتابعون ملفكِ، وكل اطّلاع "
            "عليها يُسجَّل."
        ),
    ),
    scopes=(
        (
            "shelter",
            (
                "الإيواء: إذا وافقتِ، نبحث لكِ عن مكان في مركز إيواء في جهتكِ. لا يتلقى "
                "المركز إلا رقم الملف وجهتكِ ودرجة الخطر التي قدّرناها وعدد الأطفال الذين"
                " يرافقونكِ وما تحتاجينه للتنقل بسهولة."
            ),
        ),
        (
            "legal",
            (
                "المساعدة القانونية: إذا وافقتِ، نطلب لكِ مساعدة محامٍ أو جمعية للمساعدة "
                "القانونية. لا يتلقون إلا رقم الملف وجهتكِ ودرجة الخطر ونوع المساعدة "
                "القانونية التي تحتاجينها واللغات التي تتكلمينها."
            ),
        ),
        (
            "employment",
            (
                "التكوين والعمل: إذا وافقتِ، نبحث لكِ عن مقعد في تكوين. لا يتلقى مركز "
                "التكوين إلا رقم الملف وجهتكِ ودرجة الخطر والتكوينات التي تهمّكِ واللغات "
                "التي تتكلمينها."
            ),
        ),
        (
            "reporting",
            (
                "الإحصاءات: إذا وافقتِ، تُحسَب حالتكِ في الأرقام التي تساعدنا على تحسين "
                "مساعدة النساء، دون اسمكِ ودون أي شيء يدلّ عليكِ. وإذا لم توافقي، لا "
                "تُحسَب في الإحصاءات."
            ),
        ),
    ),
    rights=(
        ("يمكنكِ أن توافقي على بعض الخدمات وأن ترفضي غيرها، أو أن ترفضيها كلها: سنواصل مساعدتكِ."),
        (
            "يمكنكِ أن تسحبي موافقتكِ في أي وقت، حتى لاحقًا، ويكفي أن تخبرينا بذلك. "
            "عندها نوقف الطلب لدى تلك الخدمة ونطلب منها محو ما تلقّته. سحب موافقتكِ "
            "لا يُفقدكِ أي مساعدة منا."
        ),
        ("إذا احتاج ملفكِ يومًا إلى أن ينتقل إلى مؤسسة أخرى، فسنطلب موافقتكِ أولًا."),
    ),
    question="على أي خدمات توافقين؟",
)

FRENCH = ConsentScript(
    code="fr",
    name="Français",
    direction="ltr",
    title="Votre accord, avant tout partage",
    opening=(
        (
            "Avant d'aller plus loin, je vais vous expliquer ce que Masar fait de vos"
            " informations. C'est vous qui décidez. Vous pouvez m'arrêter et me poser"
            " des questions à tout moment."
        ),
        (
            "Votre nom, votre numéro de téléphone, votre adresse et ce que vous "
            "m'avez raconté ne sont jamais envoyés aux services vers lesquels nous "
            "vous orientons. Seules les personnes qui suivent votre dossier peuvent "
            "les voir, et chaque consultation est enregistrée."
        ),
    ),
    scopes=(
        (
            "shelter",
            (
                "Hébergement : si vous êtes d'accord, nous cherchons pour vous une place "
                "dans un centre d'hébergement de votre région. Le centre reçoit seulement"
                " le numéro du dossier, votre région, le niveau de danger que nous avons "
                "évalué, le nombre d'enfants qui viennent avec vous et ce dont vous avez "
                "besoin pour vous déplacer facilement."
            ),
        ),
        (
            "legal",
            (
                "Aide juridique : si vous êtes d'accord, nous demandons pour vous l'aide "
                "d'un avocat ou d'une association d'aide juridique. Ils reçoivent "
                "seulement le numéro du dossier, votre région, le niveau de danger, "
                "l'aide juridique dont vous avez besoin et les langues que vous parlez."
            ),
        ),
        (
            "employment",
            (
                "Formation et travail : si vous êtes d'accord, nous cherchons pour vous "
                "une place dans une formation. Le centre de formation reçoit seulement le"
                " numéro du dossier, votre région, le niveau de danger, les formations "
                "qui vous intéressent et les langues que vous parlez."
            ),
        ),
        (
            "reporting",
            (
                "Statistiques : si vous êtes d'accord, votre situation est comptée dans "
                "les chiffres qui nous aident à améliorer l'aide aux femmes, sans votre "
                "nom et sans rien qui permette de vous reconnaître. Si vous n'êtes pas "
                "d'accord, elle n'est pas comptée dans les statistiques."
            ),
        ),
    ),
    rights=(
        (
            "Vous pouvez accepter certains services et en refuser d'autres, ou tous "
            "les refuser : nous continuerons à vous aider."
        ),
        (
            "Vous pouvez retirer votre accord à tout moment, même plus tard : il "
            "suffit de nous le dire. Nous arrêtons alors la demande auprès de ce "
            "service et nous lui demandons d'effacer ce qu'il a reçu. Retirer votre "
            "accord ne vous fait perdre aucune aide de notre part."
        ),
        (
            "Si un jour votre dossier doit passer à une autre organisation, nous vous"
            " demanderons d'abord votre accord."
        ),
    ),
    question="Pour quels services êtes-vous d'accord ?",
)


# In the order the page offers them: Darija first (spoken by nine in ten).
SCRIPTS: dict[str, ConsentScript] = {s.code: s for s in (DARIJA, TAMAZIGHT, ARABIC, FRENCH)}

# The script opened by default for each console language; English opens
# Darija, the language most survivors speak.
_FOR_CONSOLE = {"ar": "ar", "fr": "fr", "zgh": "zgh", "en": "ary"}


def default_script(console_language: str) -> str:
    """The code of the script to open first for a console in `console_language`."""
    return _FOR_CONSOLE.get(console_language, DARIJA.code)
