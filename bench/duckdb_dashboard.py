"""The dashboard request of `metricstore bench --dashboard`, as DuckDB SQL
over the same Parquet event files, for comparison in the same run.

    python3 bench/duckdb_dashboard.py DATA SKILL START END [ITERATIONS] [CLIENTS]

START and END are days (YYYY-MM-DD, END exclusive). Prints p50 and p99 of
the five queries run one after another (DuckDB parallelises each query),
and requests per second with CLIENTS threads for 10 seconds. DuckDB is only
a yardstick here (`pip install duckdb`), not a dependency of the product.
"""

import statistics
import sys
import threading
import time

import duckdb


def queries(data, skill, start, end):
    events = f"read_parquet('{data}/events/*/*.parquet', hive_partitioning = true)"
    where = (
        f"workspace_id = '{skill}' AND time >= TIMESTAMPTZ '{start} 00:00:00+00' "
        f"AND time < TIMESTAMPTZ '{end} 00:00:00+00' AND date >= '{start}' AND date < '{end}'"
    )
    day = "time_bucket(INTERVAL 1 DAY, time)"
    hour = "time_bucket(INTERVAL 1 HOUR, time)"
    return [
        f"SELECT {day} AS b, count(DISTINCT user_id) FROM {events} "
        f"WHERE {where} AND event_type = 'utterance' GROUP BY b ORDER BY b",
        f"SELECT {day} AS b, count(*) FROM {events} "
        f"WHERE {where} AND event_type = 'utterance' GROUP BY b ORDER BY b",
        f"SELECT intent, count(*) FROM {events} "
        f"WHERE {where} AND event_type = 'utterance' AND outcome = 'failed' GROUP BY intent ORDER BY intent",
        f"SELECT {hour} AS b, quantile_cont(latency_ms, 0.9) FROM {events} "
        f"WHERE {where} AND event_type = 'utterance' GROUP BY b ORDER BY b",
        f"SELECT {day} AS b, count(*) FROM {events} "
        f"WHERE {where} AND event_type = 'session.ended' AND outcome IN ('user_ended', 'skill_ended') "
        f"GROUP BY b ORDER BY b",
    ]


def request(con, qs):
    for q in qs:
        con.execute(q).fetchall()


def main():
    data, skill, start, end = sys.argv[1:5]
    iterations = int(sys.argv[5]) if len(sys.argv) > 5 else 10
    clients = int(sys.argv[6]) if len(sys.argv) > 6 else 16
    qs = queries(data, skill, start, end)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    request(con, qs)  # warm-up
    times = []
    for _ in range(iterations):
        t = time.perf_counter()
        request(con, qs)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    p99 = times[round((len(times) - 1) * 0.99)]
    done = [0] * clients
    deadline = time.perf_counter() + 10

    def client(i):
        c = con.cursor()
        while time.perf_counter() < deadline:
            request(c, qs)
            done[i] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rate = sum(done) / (time.perf_counter() - started)
    print(
        f"duckdb {duckdb.__version__}  p50 {statistics.median(times):8.1f} ms  "
        f"p99 {p99:8.1f} ms  {rate:7.1f} requests/s ({clients} clients)"
    )


if __name__ == "__main__":
    main()
