from orchestration.report import TrialRecord, study_csv, study_markdown, study_plot, study_rows


def _row(switch, top1, macs, device, trained=True, matches=None, devices=1):
    return {
        "switch": switch,
        "trained": trained,
        "top1": top1,
        "top5": None,
        "macs": macs,
        "max_device_macs": device,
        "params": 1000,
        "devices": devices,
        "matches": matches,
    }


RECORDS = [
    TrialRecord(
        "a",
        "paradis_a",
        "ParaDiS Wide IPKD",
        {"variant": "paradis"},
        [
            _row("[1.2]", 0.91, 5400, 5400),
            _row("[1.0]", 0.90, 3800, 3800),
            _row("[0.5, 0.5]", 0.89, 2200, 1100, devices=2),
            _row("[0.5, 0.25, 0.25]", 0.88, 1800, 1100, trained=False, devices=3),
            _row("[4x0.25]", 0.87, 1300, 330, devices=4),
        ],
    ),
    TrialRecord(
        "b",
        "us_b",
        "US Wide IPKD",
        {"variant": "us"},
        [
            _row("[1.2]", 0.905, 5400, 5400),
            _row("[1.0]", 0.899, 3800, 3800, matches="[1.0]"),
            _row("[0.725]", 0.885, 2100, 2100, matches="[0.5, 0.5]"),
            _row("[0.625]", 0.88, 1700, 1700, matches="[0.5, 0.25, 0.25]"),
            _row("[0.525]", 0.86, 1300, 1300, matches="[4x0.25]"),
            _row("[0.25]", 0.80, 400, 400),
        ],
    ),
]


def test_study_table_has_a_row_per_trial_and_a_column_per_switch():
    md = study_markdown(RECORDS, "t")
    lines = md.splitlines()
    header = lines[2]
    assert header.startswith("| trial | method | variant | [1.2] | [1.0] | [0.5, 0.5] | [0.5, 0.25, 0.25] | [4x0.25]")
    assert "| paradis_a | ParaDiS Wide IPKD | paradis | 91.00 | 90.00 | 89.00 | *88.00* | 87.00 |" in md
    assert "| us_b | US Wide IPKD | us | 90.50 | 89.90 | 88.50 (0.725) | 88.00 (0.625) | 86.00 (0.525) | 80.00 |" in md
    assert "| MMACs (total / per device) |" in md
    _header_csv, rows = study_rows(RECORDS)
    assert rows[1]["acc [0.5, 0.5]"] == 0.885 and rows[1]["matched [0.5, 0.5]"] == "[0.725]"
    assert rows[0]["acc [0.25]"] is None
    assert study_csv(RECORDS).splitlines()[0].startswith("trial,method,variant,status,acc [1.2]")


def test_plot_is_written(tmp_path):
    path = study_plot(RECORDS, tmp_path / "plot.png", "title")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
