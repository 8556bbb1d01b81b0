package replay

import "flag"

func testingFlag(n *int) {
	flag.IntVar(n, "replay.records", *n, "records in BenchmarkReplay's journal")
}
