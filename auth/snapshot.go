package auth

// Snapshot is the whole of what a store keeps, as records: what `vmsauth
// site init` copies from a box's file into a site, and what `vmsauth
// backup` on a site box writes out as a box's file. It lives here, beside
// the records it holds, because the two backends exchange it and neither
// may import the other. Indexes (the login index, a session's public id)
// are not in it: each backend rebuilds its own from the records.
type Snapshot struct {
	// LastUserID is the last user id the store gave (its counter): ids
	// are never given twice, even those of deleted users, so the counter
	// moves with the users.
	LastUserID int64
	// LastAudit is the last audit sequence number given.
	LastAudit int64
	// Users ordered by id.
	Users []*User
	// Sessions and Refreshes of those users, in no particular order.
	Sessions  []*Session
	Refreshes []*Refresh
	// Audit is the trail, oldest first, each entry with its sequence
	// number.
	Audit []AuditRecord
}

// AuditRecord is an audit entry with its sequence number.
type AuditRecord struct {
	Seq   int64
	Entry AuditEntry
}
