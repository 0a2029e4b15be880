package store

import "time"

// ReportMemory is how long the control plane remembers which parts of an
// edge report it applied ([ClaimReportPart]). An edge sends a report again,
// with the same id, until the control plane answers it; a retry later than
// this (an edge cut off from its control plane for a day) is applied again.
const ReportMemory = 24 * time.Hour

// ClaimReportPart marks one part of an edge report (config.Report.ID) as
// applied by tx and reports whether it is the first to: false when an
// earlier transaction did, because the edge sent the report again after
// its answer was lost or a later part failed. The caller applies the part
// only when it is first, in the same transaction, so that what a report
// counts (share uses, statistics, access logs) is counted once. Two
// transactions applying the same part at once conflict, and the retried
// one finds the mark. A report without an id (from an edge before them)
// has every part applied as often as it comes.
//
//	rpt/<edge>/<report>/<part>      expires: ReportMemory
func ClaimReportPart(tx Tx, edgeID, reportID, part string) (first bool, err error) {
	if reportID == "" {
		return true, nil
	}
	k := key("rpt", edgeID, reportID, part)
	switch _, err := tx.Get(k); {
	case err == nil:
		return false, nil
	case !isNotFound(err):
		return false, err
	}
	return true, tx.PutTTL(k, nil, ReportMemory)
}
