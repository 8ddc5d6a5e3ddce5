from django.urls import path

from . import snapshot_views, views

urlpatterns = [
    path("query", views.EpisodeQueryApi.as_view(), name="query"),  # first: the most frequent request
    path("episodes", views.EpisodeCollectionApi.as_view(), name="episodes"),
    path("episodes/batch", views.EpisodeBatchCreateApi.as_view(), name="episodes-batch"),
    # Before episodes/<id>: "delete" is no episode id.
    path("episodes/delete", views.EpisodesDeleteApi.as_view(), name="episodes-delete"),
    path("episodes/<str:episode_id>", views.EpisodeDetailApi.as_view(), name="episode-detail"),
    path("prune/older-than", views.PruneOlderThanApi.as_view(), name="prune-older-than"),
    path("prune/keep-newest", views.PruneKeepNewestApi.as_view(), name="prune-keep-newest"),
    path("prune/keep-highest-reward", views.PruneKeepHighestRewardApi.as_view(), name="prune-keep-highest-reward"),
    path("stats", views.StatsApi.as_view(), name="stats"),
    path("save", snapshot_views.SnapshotSaveApi.as_view(), name="snapshot-save"),
    path("load", snapshot_views.SnapshotLoadApi.as_view(), name="snapshot-load"),
    path("snapshots", snapshot_views.SnapshotListApi.as_view(), name="snapshots"),
    path("checkpoint", snapshot_views.CheckpointApi.as_view(), name="checkpoint"),
]
