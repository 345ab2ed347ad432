"""Runner configs shipped with featurebridge (data; see README "Runner configs")."""
