"""Parser processes: ``parsers`` the pool the daemon holds, ``process`` what each runs,
``forkserver`` what their fork server loads.  A face: it imports nothing."""
