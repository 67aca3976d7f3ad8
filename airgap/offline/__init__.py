"""The root host: CA store, issuing, bundle building, ceremony record. No network imports."""
