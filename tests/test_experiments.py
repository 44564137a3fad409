import json

import torch

from captum_neuronpath.experiments import METHODS, paper_table


def test_paper_table_on_the_fixture_cases(digits_vit, expected):
    cases, inputs = expected
    table = paper_table(digits_vit, inputs["images"], inputs["labels"], batch_size=6, n_bootstrap=50, progress=False)
    assert [row.method for row in table.rows] == list(METHODS)
    # The located paths are the authors' (fixture cases in input order).
    order = inputs["dataset_indices"].tolist()
    for case in cases["cases"]:
        rows = [order.index(i) for i in case["dataset_indices"]]
        assert table.paths["Neuron Path"][rows].tolist() == case["neuron_path"]
        assert table.paths["Influence Pattern"][rows].tolist() == case["influence_pattern_path"]
        assert table.paths["Activation"][rows].tolist() == case["activation_path"]
    for row in table.rows:
        assert abs(row.jas - float(table.jas[row.method].double().mean())) < 1e-12
        assert row.jas_low <= row.jas <= row.jas_high
        assert row.removal.n == 15 and row.removal.low <= row.removal.deviation <= row.removal.high
    by_name = {row.method: row for row in table.rows}
    assert by_name["Neuron Path"].jas > by_name["Activation"].jas
    markdown = table.to_markdown()
    assert markdown.splitlines()[0].startswith("| Method | JAS |") and len(markdown.splitlines()) == 6
    data = json.loads(json.dumps(table.to_json()))
    assert data["rows"][2]["method"] == "Neuron Path" and len(data["paths"]["Random"]) == 15
    assert torch.equal(torch.tensor(data["paths"]["Neuron Path"]), table.paths["Neuron Path"])
