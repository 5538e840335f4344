package main

import "github.com/knockdaemon/knock/logsource"

type (
	daemonPosition = logsource.Position
	daemonSource   = logsource.Source
)
