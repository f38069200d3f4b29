"""Lineage from CI: which commit, branch and build produced a version. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping

LINEAGE_TAG_PREFIX = "atoll.lineage."
LINEAGE_KEYS = ("ci_provider", "git_commit", "git_branch", "repository", "ci_build_url", "training_data")


def ci_lineage(env: Mapping[str, str]) -> dict[str, str]:
    """Read GitHub Actions, GitLab CI or Jenkins variables; empty outside CI."""
    if env.get("GITHUB_ACTIONS") == "true":
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        repo = env.get("GITHUB_REPOSITORY", "")
        run = env.get("GITHUB_RUN_ID", "")
        found = {
            "ci_provider": "github-actions",
            "git_commit": env.get("GITHUB_SHA", ""),
            "git_branch": env.get("GITHUB_REF_NAME", ""),
            "repository": repo,
            "ci_build_url": f"{server}/{repo}/actions/runs/{run}" if repo and run else "",
        }
    elif env.get("GITLAB_CI") == "true":
        found = {
            "ci_provider": "gitlab-ci",
            "git_commit": env.get("CI_COMMIT_SHA", ""),
            "git_branch": env.get("CI_COMMIT_REF_NAME", ""),
            "repository": env.get("CI_PROJECT_PATH", ""),
            "ci_build_url": env.get("CI_JOB_URL") or env.get("CI_PIPELINE_URL", ""),
        }
    elif env.get("JENKINS_URL"):
        found = {
            "ci_provider": "jenkins",
            "git_commit": env.get("GIT_COMMIT", ""),
            "git_branch": env.get("GIT_BRANCH", ""),
            "repository": env.get("GIT_URL", ""),
            "ci_build_url": env.get("BUILD_URL", ""),
        }
    else:
        return {}
    return {key: value for key, value in found.items() if value}


def lineage_tags(lineage: Mapping[str, str]) -> dict[str, str]:
    return {f"{LINEAGE_TAG_PREFIX}{key}": value for key, value in lineage.items() if value}


def lineage_from_tags(tags: Mapping[str, str]) -> dict[str, str]:
    return {
        k.removeprefix(LINEAGE_TAG_PREFIX): v for k, v in tags.items() if k.startswith(LINEAGE_TAG_PREFIX)
    }
