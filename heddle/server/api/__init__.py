"""The versioned REST API: one router per resource."""
