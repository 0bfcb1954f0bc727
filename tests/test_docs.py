"""Every number quoted in docs/ prose comes from the results it describes: each reading is
rendered from its template (jaxlottery.quote) and must equal the committed text; the README and
its guide pages (docs/guide/) quote the committed runs through the same renderer."""

import glob
import os
import re

import pytest

from jaxlottery import quote

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = sorted(glob.glob(os.path.join(REPO, "docs", "**", "*.md.in"), recursive=True))
GUIDE = sorted(glob.glob(os.path.join(REPO, "docs", "guide", "*.md")))


def front_door() -> str:
    """README.md and the guide pages it links to (docs/guide/*.md), one text: a quote or a
    preset's cost may live on any of them, and is checked wherever it lives."""
    texts = []
    for path in [os.path.join(REPO, "README.md"), *GUIDE]:
        with open(path) as f:
            texts.append(f.read())
    return "\n".join(texts)


def test_the_guide_pages_exist():
    assert GUIDE, "no docs/guide/*.md pages found: the README's long sections live there"


def test_there_are_readings_to_check():
    assert TEMPLATES, "no docs/**/*.md.in templates found"


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: os.path.relpath(p, REPO))
def test_committed_reading_is_its_template_rendered(template):
    out, text = quote.render_file(template)
    with open(out) as f:
        assert f.read() == text, (f"{os.path.relpath(out, REPO)} differs from its template "
                                  f"rendered: run python -m jaxlottery.quote {template}")


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: os.path.relpath(p, REPO))
def test_readings_quote_numbers_only_through_placeholders(template):
    """Digits in a template's prose may only name settings (epochs, k, levels), not results:
    every decimal number with a point, and every percentage, is a placeholder."""
    with open(template) as f:
        prose = quote._PLACEHOLDER.sub("", f.read())
    prose = re.sub(r"```.*?```", "", prose, flags=re.S)  # commands
    prose = re.sub(r"`[^`]*`", "", prose)  # code, file names
    prose = re.sub(r"\]\([^)]*\)", "]", prose)  # link targets
    assert not re.findall(r"\d+\.\d+", prose), "a decimal number typed into the prose"


def test_the_readme_quotes_the_committed_runs():
    readme = front_door()
    template = os.path.join(REPO, "README.md.in")
    if os.path.exists(template):
        pytest.fail("README.md is not templated; its quotes are checked here")
    for path in TEMPLATES:
        quotes = os.path.join(os.path.dirname(path), "readme_quotes.md.in")
        if not os.path.exists(quotes):
            continue
        _, lines = quote.render_file(quotes)
        for line in [x.strip() for x in lines.splitlines()][2:]:
            assert not line or line in readme, f"README.md or docs/guide/ should quote: {line}"


def test_placeholders_fail_loudly():
    res = {"composition": [{"method": "union", "k": 2}, {"method": "union", "k": 4}]}
    assert quote.render("{{ row('composition', k=2)['k'] :d }} ok", res) == "2 ok"
    with pytest.raises(quote.QuoteError, match="2 rows"):
        quote.render("{{ row('composition', method='union')['k'] }}", res)
    with pytest.raises(quote.QuoteError, match="NameError"):
        quote.render("{{ nothing }}", res)


def test_the_readme_quotes_the_presets_costs():
    from jaxlottery import config

    readme = front_door()
    for name in ("paper", "quick", "smoke", "claim2"):
        total = sum(config.preset(name).network_epochs().values())
        assert f"{total:,.0f} network-epochs" in readme, name
    imprint = sum(config.preset("imprint").network_epochs().values())
    assert f"| {imprint:,.0f} network-epochs per weight decay" in readme
    costs = [sum(config.preset("paper", inits=n).network_epochs().values()) for n in (2, 3)]
    assert (f"the paper preset costs {costs[0]:,.0f} network-epochs with `--inits=2` and "
            f"{costs[1]:,.0f} with\n`--inits=3` (each init adds {costs[1] - costs[0]:,.0f})") in readme
    paper = config.preset("paper")
    assert f"({sum(paper.network_epochs().values()) * 50_000 / 1e9:.2f} billion images)" in readme
    two = config.preset("paper", retrain_seeds=2).network_epochs()
    assert f"`--retrain_seeds=2` measures retraining noise: {sum(two.values()):,.0f}" in readme
    imp = config.preset("paper", imp_levels=10, imp_k=3).network_epochs()["imp"]
    assert f"`--imp_levels=10 --imp_k=3` adds {imp:,.0f}" in readme
    assert f"(it is {sum(paper.network_epochs().values()):,.0f} network-epochs)" in readme
    single = config.preset("paper", mask_replicates=1, positive_control=False).network_epochs()
    assert (f"`--mask_replicates=1 --positive_control=false`, the design before replicated "
            f"masks: {sum(single.values()):,.0f})") in readme
    extra = sum(paper.network_epochs().values()) - sum(single.values())
    assert f"they cost {extra:,.0f} of the {sum(paper.network_epochs().values()):,.0f}." in readme


def test_the_readme_quotes_the_natural_density_cost():
    from jaxlottery import config

    readme = " ".join(front_door().split())
    quick = config.preset("quick")
    extra = (sum(config.preset("quick", natural_density=True).network_epochs().values())
             - sum(quick.network_epochs().values()))
    assert f"It adds {extra:,.0f} network-epochs to the `quick` preset" in readme
