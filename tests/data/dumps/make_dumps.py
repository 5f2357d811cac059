"""Rebuilds the fixtures in this folder from data/sample (real BTCUSDT candles) in the layout of
Binance's public kline dumps: 12 columns, one file per month or day, .zip / .csv.gz / .csv, with
and without a header. quote_volume = volume x typical price (what the backtest estimates when the
column is empty, so a backtest over these files equals one over data/sample); count and the taker
columns are derived placeholders; ignore = 0. Run from the repository root:
    python3 tests/data/dumps/make_dumps.py
"""
import csv, gzip, io, os, zipfile
from datetime import datetime, timezone

SRC = "data/sample"
OUT = "tests/data/dumps"
HEADER = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"

def rows(tf):
    with gzip.open(f"{SRC}/BTCUSDT-{tf}.csv.gz", "rt") as f:
        r = csv.reader(f)
        next(r)
        for row in r:
            o, h, l, c, v = (float(x) for x in row[1:6])
            qv = v * ((h + l + c) / 3.0)
            yield [row[0], row[1], row[2], row[3], row[4], row[5], row[6], repr(qv), str(int(v)),
                   repr(v / 2), repr(qv / 2), "0"]

def day(ms):
    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc)

def write(name, body_rows, header):
    text = (HEADER + "\n" if header else "") + "".join(",".join(r) + "\n" for r in body_rows)
    path = os.path.join(OUT, name)
    if name.endswith(".zip"):
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(name[:-4] + ".csv", text)
    elif name.endswith(".gz"):
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        with open(path, "w") as f:
            f.write(text)

# (interval, month or day, extension, header)
PLAN = {
    "15m": [("2026-02", ".zip", False), ("2026-03", ".csv.gz", True),
            ("2026-04-01", ".csv", True), ("2026-04-02", ".csv", False), ("2026-04-03", ".zip", False)],
    "1h": [("2026-01", ".zip", False), ("2026-02", ".csv.gz", True), ("2026-03", ".zip", True), ("2026-04", ".csv", False)],
    "4h": [("2026-01", ".csv", True), ("2026-02", ".zip", False), ("2026-03", ".zip", False), ("2026-04", ".csv.gz", True)],
}
for tf, parts in PLAN.items():
    all_rows = list(rows(tf))
    for period, ext, header in parts:
        fmt = "%Y-%m-%d" if len(period) == 10 else "%Y-%m"
        picked = [r for r in all_rows if day(r[0]).strftime(fmt) == period]
        write(f"BTCUSDT-{tf}-{period}{ext}", picked, header)
