package auth

import "slices"

// Permission is one entry of the built-in catalog. IDs are stable: they are
// what clients of the seed product store, and seed 001's examples (72, 115,
// 120) keep their numbers.
type Permission struct {
	ID          int    `json:"id"`
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
	Group       string `json:"group"`
}

// Permissions that vmsauth itself checks.
const (
	PermUsersView       = "users-view"
	PermUsersCreate     = "users-create"
	PermUsersUpdate     = "users-update"
	PermUsersDestroy    = "users-destroy"
	PermSessionsView    = "sessions-view"
	PermSessionsDestroy = "sessions-destroy"
	PermPermissionsView = "permissions-view"
	PermAuditView       = "audit-view"
)

// Catalog is every permission a VMS box knows, ordered by id.
var Catalog = []Permission{
	{1, "cameras-view", "Viewing cameras", "Cameras"},
	{2, "cameras-create", "Adding a camera", "Cameras"},
	{3, "cameras-update", "Updating a camera", "Cameras"},
	{4, "cameras-destroy", "Deleting a camera", "Cameras"},
	{5, "cameras-live", "Watching live video", "Cameras"},
	{10, "camera-groups-view", "Viewing camera groups", "Camera groups"},
	{11, "camera-groups-create", "Adding a camera group", "Camera groups"},
	{12, "camera-groups-update", "Updating a camera group", "Camera groups"},
	{13, "camera-groups-destroy", "Deleting a camera group", "Camera groups"},
	{20, "archive-view", "Viewing the archive", "Archive"},
	{21, "archive-export", "Exporting archive footage", "Archive"},
	{22, "archive-destroy", "Deleting archive footage", "Archive"},
	{30, "ptz-control", "Controlling PTZ cameras", "PTZ"},
	{31, "ptz-presets-update", "Updating PTZ presets", "PTZ"},
	{40, PermUsersView, "Viewing users", "Users"},
	{41, PermUsersCreate, "Adding a user", "Users"},
	{42, PermUsersUpdate, "Updating a user", "Users"},
	{43, PermUsersDestroy, "Deleting a user", "Users"},
	{45, PermSessionsView, "Viewing user sessions", "Users"},
	{46, PermSessionsDestroy, "Ending user sessions", "Users"},
	{48, PermPermissionsView, "Viewing permissions", "Users"},
	{49, PermAuditView, "Viewing the login audit", "Users"},
	{70, "streams-view", "Viewing video streams", "Video streams"},
	{71, "streams-create", "Adding a video stream", "Video streams"},
	{72, "streams-update", "Updating a video Stream", "Video streams"},
	{73, "streams-destroy", "Deleting a video stream", "Video streams"},
	{112, "dhcp-subnets-view", "Viewing DHCP networks", "DHCP subnets"},
	{113, "dhcp-subnets-create", "Adding a DHCP network", "DHCP subnets"},
	{114, "dhcp-subnets-update", "Updating a DHCP network", "DHCP subnets"},
	{115, "dhcp-subnets-destroy", "Deleting a DHCP network", "DHCP subnets"},
	{118, "servers-view", "Viewing media servers", "Servers"},
	{119, "servers-create", "Adding a media server", "Servers"},
	{120, "servers-update", "Updating a media server", "Servers"},
	{121, "servers-destroy", "Deleting a media server", "Servers"},
	{130, "intercoms-view", "Viewing intercoms", "Intercoms"},
	{131, "intercoms-open", "Opening a door by intercom", "Intercoms"},
	{132, "intercoms-update", "Updating an intercom", "Intercoms"},
	{140, "analytics-view", "Viewing analytics events", "Analytics"},
	{141, "analytics-update", "Configuring video analytics", "Analytics"},
	{142, "analytic-licenses-view", "Viewing analytic licenses", "Analytics"},
}

// LookupPermission finds a catalog entry by name.
func LookupPermission(name string) (Permission, bool) {
	i := slices.IndexFunc(Catalog, func(p Permission) bool { return p.Name == name })
	if i < 0 {
		return Permission{}, false
	}
	return Catalog[i], true
}

// AllPermissionNames returns every catalog name, in catalog order.
func AllPermissionNames() []string {
	names := make([]string, len(Catalog))
	for i, p := range Catalog {
		names[i] = p.Name
	}
	return names
}

// PermissionsOf returns the catalog entries a user holds, in catalog order;
// names no longer in the catalog are skipped.
func PermissionsOf(u *User) []Permission {
	out := make([]Permission, 0, len(u.Permissions))
	for _, p := range Catalog {
		if u.Has(p.Name) {
			out = append(out, p)
		}
	}
	return out
}

// License is one pool of the box's analytic licenses (seed 000's
// analytic_license). The VMS assigns them to cameras; vmsauth only reports
// the pool it is configured with.
type License struct {
	Type       string `json:"type"`
	TypePretty string `json:"type_pretty"`
	All        int    `json:"all"`
	Free       int    `json:"free"`
	Used       int    `json:"used"`
}
