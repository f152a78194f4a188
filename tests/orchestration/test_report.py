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


def _sr_row(switch, psnr, macs, device, trained=True, matches=None):
    row = _row(switch, None, macs, device, trained=trained, matches=matches)
    return {**row, "psnr": psnr, "baseline_psnr": 31.52}


SR_RECORDS = [
    TrialRecord(
        "s",
        "paradis_s",
        "ParaDiS",
        {"variant": "paradis"},
        [
            _sr_row("[1.0]", 32.61, 3000, 3000),
            _sr_row("[0.5, 0.5]", 32.4, 1500, 750),
            _sr_row("[0.5, 0.25, 0.25]", 32.1, 1100, 750, trained=False),
            _sr_row("[4x0.25]", 32.0, 800, 200),
        ],
    ),
    TrialRecord("u", "us_u", "US", {"variant": "us"}, [_sr_row("[0.5]", 32.3, 800, 800, matches="[4x0.25]")]),
]


def test_super_resolution_study_table_and_plot_carry_psnr_and_the_bicubic_baseline(tmp_path):
    md = study_markdown(SR_RECORDS, "sr")
    assert "| paradis_s | ParaDiS | paradis | 32.61 | 32.40 | *32.10* | 32.00 |" in md
    assert "| us_u | US | us | N/A | N/A | N/A | 32.30 (0.5) |" in md
    assert "PSNR (dB, Y channel, border = scale)" in md and "Bicubic upsampling on the same images: 31.52 dB." in md
    header, rows = study_rows(SR_RECORDS)
    assert "psnr [1.0]" in header and not any(h.startswith("acc ") for h in header)
    assert rows[0]["psnr [0.5, 0.5]"] == 32.4 and rows[1]["psnr [4x0.25]"] == 32.3
    assert study_plot(SR_RECORDS, tmp_path / "psnr.png").stat().st_size > 10_000
